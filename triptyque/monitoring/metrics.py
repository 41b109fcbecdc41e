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

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx

from triptyque.errors import MissingToolError, TargetError
from triptyque.keys import hash_key
from triptyque.spec import ServiceSpec

METRICS_DIR = Path("monitoring/metrics")
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )")
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
    families: dict[str, str] = {}
    names: dict[str, str] = {}
    for line in text.splitlines():
        typed = _TYPE.match(line)
        if typed:
            families[typed.group(1)] = typed.group(2)
            for name in _expected_names(typed.group(1), typed.group(2)):
                names.setdefault(name, typed.group(2))
            continue
        if not line or line.startswith("#"):
            continue
        sample = _SAMPLE.match(line)
        if sample is None:
            continue
        name = sample.group(1)
        names[name] = _family_type(name, families)
    return dict(sorted(names.items()))


def _family_type(name: str, families: dict[str, str]) -> str:
    if name in families:
        return families[name]
    for kind_suffixes in _SUFFIXES.values():
        for suffix in kind_suffixes:
            base = name.removesuffix(suffix)
            if base != name and base in families:
                return families[base]
    return "untyped"


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


@contextlib.contextmanager
def _started(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in a session of its own; stop that session (and only it) on exit."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            yield process
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            _stop_session(process)


def _stop_session(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TargetError(f"{process.args!r} exited with {process.returncode} before {url}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise TargetError(f"{url} did not answer within {timeout:.0f}s")


def capture_vllm(spec: ServiceSpec, port: int) -> str:
    from triptyque.engine import engine_args

    on_port = spec.model_copy(update={"engine": spec.engine.model_copy(update={"port": port})})
    env = {**os.environ, **spec.engine.env}
    base = f"http://127.0.0.1:{port}"
    with _started([sys.executable, *engine_args(on_port)], env=env) as process:
        _wait_http(f"{base}/health", process, timeout=300)
        body = {"model": spec.model.served_name, "prompt": "hello", "max_tokens": 4}
        httpx.post(f"{base}/v1/completions", json=body, timeout=60).raise_for_status()
        with httpx.stream("POST", f"{base}/v1/completions", json={**body, "stream": True},
                          timeout=60) as response:
            response.raise_for_status()
            for _ in response.iter_bytes():
                pass
        return httpx.get(f"{base}/metrics", timeout=10).text


NODE_EXPORTER_BINARIES = ("prometheus-node-exporter", "node_exporter")


def capture_node(spec: ServiceSpec, port: int) -> str:
    del spec
    binary = next(filter(None, map(shutil.which, NODE_EXPORTER_BINARIES)), None)
    if binary is None:
        raise MissingToolError("node exporter not found: apt-get install prometheus-node-exporter")
    with _started([binary, f"--web.listen-address=127.0.0.1:{port}"]) as process:
        _wait_http(f"http://127.0.0.1:{port}/metrics", process, timeout=30)
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


async def _stand_in_engine(request: httpx.Request) -> httpx.Response:
    """Answers like vLLM: a completion with usage, or the same streamed then [DONE]."""
    chunk = {"id": "cmpl-1", "object": "text_completion", "model": "m",
             "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    if not json.loads(request.content or b"{}").get("stream"):
        return httpx.Response(200, json=chunk)

    async def events() -> AsyncIterator[bytes]:
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events())


async def _scrape_gateway(spec: ServiceSpec, state_dir: Path) -> str:
    from triptyque.gateway.app import create_app
    from triptyque.gateway.settings import settings_from_spec

    key = "capture-key"
    settings = settings_from_spec(
        spec, upstream_url="http://engine.invalid", state_dir=state_dir,
        extra_api_keys={"capture": hash_key(key)},
    )
    app = create_app(settings, transport=httpx.MockTransport(_stand_in_engine))
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": spec.model.served_name, "prompt": "hello", "max_tokens": 4}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        await client.post("/v1/completions", json=body, headers=headers)
        await client.post("/v1/completions", json={**body, "stream": True}, headers=headers)
        return (await client.get("/metrics")).text


def capture_gateway(spec: ServiceSpec, port: int) -> str:
    del port
    with tempfile.TemporaryDirectory() as state_dir:
        return asyncio.run(_scrape_gateway(spec, Path(state_dir)))


CAPTURES: dict[str, Callable[[ServiceSpec, int], str]] = {
    "vllm": capture_vllm,
    "node": capture_node,
    "gateway": capture_gateway,
}
