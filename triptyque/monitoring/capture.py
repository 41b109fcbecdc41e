"""Capture what the real components expose: the gateway, vLLM and node_exporter.

A developer's tool (``python -m triptyque.monitoring capture ...``) and the tests' way
to check the checked-in metric lists: it starts the real gateway in process, vLLM and
node_exporter as processes. It sits above the renderers (it runs the gateway), so the
layer contract lets only this module of ``triptyque.monitoring`` import the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx

from triptyque.errors import MissingToolError, TargetError
from triptyque.keys import hash_key
from triptyque.spec import ServiceSpec
from triptyque.wait import WaitTimeout, http_ok, wait_until


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
    def exited() -> str | None:
        return None if process.poll() is None else f"{process.args!r} exited with {process.returncode}"

    try:
        wait_until(http_ok(url), timeout=timeout, what=f"{url} answering", interval=0.5, abort=exited)
    except WaitTimeout as exc:
        raise TargetError(str(exc)) from None


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
