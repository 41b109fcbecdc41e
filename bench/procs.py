"""Start and stop what a benchmark measures: fake engine, real vLLM, gateways (ports 38000-38099).

Every process is started in a session of its own and stopped by its own process
group id when the ``Processes`` context exits, whatever happened in between.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from triptyque.engine import engine_args
from triptyque.gateway.settings import AUDIT_FILE, STATE_FILE, GatewaySettings
from triptyque.keys import hash_key
from triptyque.paths import project_root
from triptyque.spec import KillSwitch, Limits, load_spec
from triptyque.wait import wait_http as triptyque_wait_http

ROOT = project_root(Path(__file__))

API_KEY, ADMIN_KEY = "tq-bench-api-key", "tq-bench-admin-key"


def gateway_settings(port: int, upstream_port: int, state_dir: Path, **limits: Any) -> GatewaySettings:
    base = dict(max_body_bytes=1 << 20, max_concurrent_requests=16, connect_timeout_seconds=2.0,
                first_byte_timeout_seconds=60.0, idle_timeout_seconds=30.0)
    return GatewaySettings(
        port=port, upstream_url=f"http://127.0.0.1:{upstream_port}", served_model="tiny-llama",
        api_keys={"bench": hash_key(API_KEY)}, admin_keys={"ops": hash_key(ADMIN_KEY)},
        limits=Limits(**(base | limits)), kill_switch=KillSwitch(),
        state_path=state_dir / STATE_FILE, audit_path=state_dir / AUDIT_FILE,
        target="bench", spec_hash="bench",
        # The fake engine's controls: the gateway forwards only an allowlist of headers.
        forward_headers=("x-fake-first-byte-delay", "x-fake-token-interval", "x-fake-status"),
    )


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> float:
    def exited() -> str | None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
        return None

    return triptyque_wait_http(url, timeout=timeout, interval=0.05, abort=exited)


class PortPool:
    """Hands out ports of ``ports`` that nothing holds right now (checked by binding)."""

    def __init__(self, ports: range) -> None:
        self._ports = itertools.cycle(ports)
        self._size = len(ports)

    def take(self) -> int:
        for _ in range(self._size):
            port = next(self._ports)
            if port_free(port):
                return port
        raise RuntimeError("no free port left in the benchmark's range")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Processes:
    """What one benchmark started; all of it is stopped on exit."""

    workdir: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # CPUs by the first word of a process's name ("vllm", "gateway", ...), for taskset.
    pinned: dict[str, set[int]] = field(default_factory=dict)
    # vLLM's CPU thread binding: "nobind" as the local and edge targets run it, or "auto"
    # (vLLM's default: its worker pinned to a core) to see what that costs the gateway.
    vllm_bind: str = "nobind"

    def __enter__(self) -> Processes:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for name in list(self.started):
            self.stop(name)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        cpus = self.pinned.get(name.split("-")[0])
        proc = subprocess.Popen(["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv] if cpus else argv,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        log.close()
        self.started[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.started.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def fake_engine(self, port: int, name: str = "fake-engine", **options: float) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "bench.fake_engine", "--port", str(port)]
        for option, value in options.items():
            argv += [f"--{option.replace('_', '-')}", str(value)]
        return self.serve(name, argv, {"PYTHONPATH": str(ROOT)}, ROOT, f"http://127.0.0.1:{port}/health", 15)

    def gateway(self, settings: GatewaySettings, name: str = "gateway",
                source: Path | None = None) -> subprocess.Popen[bytes]:
        """``python -m triptyque.gateway``, from ``source`` (a copy of the package) when given."""
        path = self.workdir / f"{name}.json"
        # An older gateway (``source``, for --baseline) refuses fields it does not know: give it
        # only what differs from the defaults, and no header allowlist (it forwarded everything).
        data = settings.model_dump(mode="json", exclude_defaults=source is not None)
        if source is not None:
            data.pop("forward_headers", None)
        path.write_text(json.dumps(data))
        env = {"PYTHONPATH": str(source or ROOT)}
        argv = [sys.executable, "-m", "triptyque.gateway", "--settings", str(path)]
        return self.serve(name, argv, env, self.workdir, f"http://127.0.0.1:{settings.port}/healthz", 20)

    def serve(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, url: str,
               timeout: float) -> subprocess.Popen[bytes]:
        """Start a server and wait for ``url``; start again if its port was taken for a moment.

        38000-38099 lie in Linux's ephemeral range, so an outgoing connection (ours or
        anyone's) can hold one of them as its local port for a while.
        """
        for attempt in range(5):
            proc = self.spawn(name, argv, env, cwd)
            try:
                wait_http(url, timeout, proc)
                return proc
            except RuntimeError:
                self.started.pop(name, None)
                log = (self.workdir / f"{name}.log").read_text(errors="replace")
                if "address already in use" not in log.lower() or attempt == 4:
                    raise
                (self.workdir / f"{name}.log").write_text("")
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def vllm(self, port: int, name: str = "vllm") -> subprocess.Popen[bytes]:
        argv = [sys.executable, *engine_args(load_spec(ROOT / "serving" / "service.yaml", "local"), port=port)]
        proc = self.spawn(name, argv, env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": self.vllm_bind,
                                           "VLLM_NO_USAGE_STATS": "1",
                                           "HF_HUB_OFFLINE": "1"})
        wait_http(f"http://127.0.0.1:{port}/health", 300, proc)
        return proc


def baseline_tree(commit: str, into: Path) -> Path:
    """The gateway as committed at ``commit`` (``git archive``, read-only), to run side by side."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit, "triptyque"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (not its children)."""
    return int(psutil.Process(pid).memory_info().rss)
