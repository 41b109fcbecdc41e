"""The pinned Helm releases under charts/ and which of them a stack installs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from triptyque.errors import TargetError
from triptyque.k8s.config import StackConfig
from triptyque.spec import deep_merge

_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class ChartRelease:
    name: str
    repository: str
    chart: str
    version: str
    namespace: str
    values: dict[str, Any]

    values_files: tuple[str, ...] = ("values.yaml",)
    # Where the pin was checked to exist upstream; empty: not checked (no network then).
    verified: str = ""

    def helm_command(self) -> str:
        files = " ".join(f"--values charts/{self.name}/{name}" for name in self.values_files)
        return (f"helm upgrade --install {self.name} {self.chart} --repo {self.repository} "
                f"--version {self.version} --namespace {self.namespace} --create-namespace "
                f"{files}")


def load_chart(charts_dir: Path, name: str, target: str | None = None) -> ChartRelease:
    """The pinned release; with ``target``, its ``values-<target>.yaml`` merged over the values
    (what differs there, e.g. a managed control plane that exposes no metrics)."""
    folder = charts_dir / name
    overlay = folder / f"values-{target}.yaml" if target else None
    files = ["values.yaml"]
    try:
        release = yaml.safe_load((folder / "release.yaml").read_text(encoding="utf-8"))
        values = yaml.safe_load((folder / "values.yaml").read_text(encoding="utf-8")) or {}
        if overlay is not None and overlay.is_file():
            values = deep_merge(values, yaml.safe_load(overlay.read_text(encoding="utf-8")) or {})
            files.append(overlay.name)
    except (OSError, yaml.YAMLError) as exc:
        raise TargetError(f"{folder}: cannot read the pinned release: {exc}") from None
    version = str(release.get("version", ""))
    if not _EXACT_VERSION.match(version):
        raise TargetError(f"{folder}/release.yaml: version {version!r} is not an exact version")
    return ChartRelease(
        name=name, repository=release["repository"], chart=release["chart"], version=version,
        namespace=release["namespace"], values=values, values_files=tuple(files),
        verified=str(release.get("verified") or ""),
    )


def wanted_charts(config: StackConfig) -> list[str]:
    """Releases the stack installs before the service, in install order.

    Prometheus's CRDs come first: the GPU operator's values ask for a ServiceMonitor.
    """
    names = []
    if config.monitoring.prometheus == "stack":
        names.append("kube-prometheus-stack")
    elif config.monitoring.prometheus == "crds":
        names.append("prometheus-operator-crds")
    if config.gpu_operator:
        names.append("gpu-operator")
    return names


def chart_names(charts_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in charts_dir.glob("*/release.yaml"))


def _download(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as answer:
        data: bytes = answer.read()
    return data


def check_pins(charts_dir: Path, fetch: Callable[[str], bytes] = _download) -> list[str]:
    """One line per pinned release, checked against its repository's index.yaml (needs the
    network); a line starting with "MISSING" or "UNREACHABLE" is a pin to fix or recheck."""
    lines = []
    for name in chart_names(charts_dir):
        chart = load_chart(charts_dir, name)
        url = chart.repository.rstrip("/") + "/index.yaml"
        try:
            index = yaml.safe_load(fetch(url)) or {}
        except Exception as exc:  # no network, DNS, TLS, a bad index
            lines.append(f"UNREACHABLE {name}: {url}: {type(exc).__name__}: {exc}")
            continue
        versions = {str(entry.get("version")) for entry in (index.get("entries") or {}).get(chart.chart, [])}
        state = "ok" if chart.version in versions else "MISSING"
        lines.append(f"{state} {name}: {chart.chart} {chart.version} in {chart.repository}"
                     + ("" if chart.verified else " (was not checked when pinned)"))
    return lines


if __name__ == "__main__":  # python -m triptyque.k8s.charts [CHARTS_DIR]
    import sys

    from triptyque.paths import project_root

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else project_root(Path(__file__)) / "charts"
    report = check_pins(folder)
    print("\n".join(report))
    sys.exit(0 if all(line.startswith("ok ") for line in report) else 1)
