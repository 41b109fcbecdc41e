"""Real processes for the resilience tests: the gateway as deployed, a fake engine to break.

The gateway runs as ``python -m triptyque.gateway --settings FILE`` (uvicorn, the
production entry point); behind it ``bench/fake_engine.py``, a separate process that
a test can slow down (request headers) or kill with SIGKILL. Ports 38050-38099.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.procs import ADMIN_KEY, API_KEY, PortPool, Processes, gateway_settings
from triptyque.gateway.settings import GatewaySettings
from triptyque.monitoring.metrics import sample_value

PORTS = PortPool(range(38050, 38100))  # bench/ uses 38000-38049
# The fake engine's controls (bench/fake_engine.py): the gateway forwards only an allowlist.
FAKE_ENGINE_HEADERS = ("x-fake-first-byte-delay", "x-fake-token-interval", "x-fake-status")
CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@dataclass
class Served:
    """One gateway process (and the engine behind it) started for a test."""

    procs: Processes
    settings: GatewaySettings
    engine_port: int

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_dir(self) -> Path:
        return self.settings.state_path.parent

    @property
    def log(self) -> str:
        return (self.procs.workdir / "gateway.log").read_text(errors="replace")

    def client(self, key: str | None = API_KEY, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def admin(self, action: str, reason: str = "resilience test", timeout: float = 10.0) -> httpx.Response:
        return httpx.post(f"{self.url}/admin/{action}", json={"operator": "tester", "reason": reason},
                          headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=timeout)

    def status(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/admin/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
        body: dict[str, Any] = r.json()
        return body

    def start_gateway(self) -> None:
        self.procs.gateway(self.settings)

    def kill_gateway(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash or an OOM kill."""
        self.procs.stop("gateway", sig=signal.SIGKILL)

    def restart_gateway(self) -> None:
        self.kill_gateway()
        self.start_gateway()

    def kill_engine(self) -> None:
        self.procs.stop("fake-engine", sig=signal.SIGKILL)

    def metric(self, name: str, **labels: str) -> float | None:
        return sample_value(httpx.get(f"{self.url}/metrics", timeout=5).text, name, **labels)


class Starter:
    """Starts fake engines and gateways under one folder; ``stop()`` ends them all."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.started = folder, []  # type: ignore[var-annotated]

    def __call__(self, state_dir: Path | None = None, engine: bool = True,
                 forward_headers: tuple[str, ...] = FAKE_ENGINE_HEADERS, **limits: Any) -> Served:
        procs = Processes(self.folder / f"run-{len(self.started)}").__enter__()
        self.started.append(procs)
        engine_port = PORTS.take()
        if engine:
            procs.fake_engine(engine_port)
        state = state_dir or self.folder / f"state-{len(self.started)}"
        settings = gateway_settings(PORTS.take(), engine_port, state, **limits)
        settings = settings.model_copy(update={"forward_headers": forward_headers})
        served = Served(procs, settings, engine_port)
        served.start_gateway()
        return served

    def stop(self) -> None:
        for procs in reversed(self.started):
            procs.__exit__(None, None, None)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Starter]:
    """A fake engine and a gateway in front of it, for one test."""
    starter = Starter(tmp_path)
    yield starter
    starter.stop()


@pytest.fixture(scope="module")
def serve_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starter]:
    """The same, shared by the tests of a module that leave the gateway as they found it."""
    starter = Starter(tmp_path_factory.mktemp("shared"))
    yield starter
    starter.stop()


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read until the server closes or ``timeout`` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a content-length (headers and body may come apart)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def status_and_json(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, json.loads(body) if body.strip() else {}


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triptyque.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folder`` with its mode, size and content (empty when absent)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.stat().st_size, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()} | {
            str(p.relative_to(folder)) + "/": (p.stat().st_mode, 0, b"")
            for p in sorted(folder.rglob("*")) if p.is_dir()}

