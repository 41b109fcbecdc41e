"""The metric names each exporter really exposes, captured from the real processes.

``monitoring/metrics/<source>.txt`` holds one ``name type`` line per series name
(histograms expanded to ``_bucket``/``_sum``/``_count``). ``vllm``, ``node`` and
``gateway`` are captured by ``python -m triptyque.monitoring capture <source>``:

    vllm      starts the engine on the CPU with the spec's tiny model, sends a plain and
              a streamed completion so every histogram has samples, scrapes /metrics
    node      starts prometheus-node-exporter on a spare port and scrapes it
    gateway   builds the gateway in process with a stand-in engine and scrapes it

``dcgm`` (no GPU here) and ``prometheus`` (series Prometheus makes itself) are
static lists, documented in their headers. Rules and dashboards may use only
names found in these lists or recorded by the rules themselves.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

METRICS_DIR = Path("monitoring/metrics")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def _expected_names(family: str, kind: str) -> list[str]:
    """Series a family yields even before it has samples (a labelled metric never used)."""
    if kind == "counter":
        return [family if family.endswith("_total") else f"{family}_total"]
    if kind in ("histogram", "gaugehistogram"):
        return [f"{family}{suffix}" for suffix in _SUFFIXES[kind] if suffix != "_created"]
    if kind == "summary":
        return [family, f"{family}_sum", f"{family}_count"]
    return [family]


def parse_exposition(text: str) -> dict[str, str]:
    """Series name -> its family's type, from Prometheus text exposition."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        kind = "untyped" if family.type == "unknown" else family.type
        for name in _expected_names(family.name, kind):
            names.setdefault(name, kind)
        for sample in family.samples:
            names[sample.name] = kind
    return dict(sorted(names.items()))


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first series ``name`` whose labels include ``labels``; None if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def list_path(root: Path, source: str) -> Path:
    return root / METRICS_DIR / f"{source}.txt"


def write_list(root: Path, source: str, names: dict[str, str]) -> Path:
    path = list_path(root, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Series names exposed by {source}, captured from the real process by\n"
              f"# `python -m triptyque.monitoring capture {source}`. One `name type` a line.\n")
    path.write_text(header + "".join(f"{n} {t}\n" for n, t in names.items()), encoding="utf-8")
    return path


def read_list(path: Path) -> dict[str, str]:
    names = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, kind = line.split()
            names[name] = kind
    return names


def known_names(root: Path) -> dict[str, str]:
    """Every name in every list under monitoring/metrics/."""
    names: dict[str, str] = {}
    for path in sorted((root / METRICS_DIR).glob("*.txt")):
        names.update(read_list(path))
    return names


# ---- capturing from real processes ------------------------------------------------------
