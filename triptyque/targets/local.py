"""The local target: engine, gateway and Prometheus on this machine, state in one folder.

Layout of the state folder (``.triptyque/local`` by default)::

    secrets.json     generated API and admin keys (mode 600; never printed)
    gateway.json     the gateway's settings (key hashes only)
    state/           kill-switch state and audit log (kept across down/up)
    run/ logs/       pid files and process logs
    monitoring/      rendered Prometheus and Alertmanager configs, rules, their data
    alerts.jsonl     every notification Alertmanager delivered (local webhook receiver)
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triptyque.targets.local_hooks import LocalHooks

from triptyque.engine import engine_args
from triptyque.errors import MissingToolError, TargetError
from triptyque.gateway.settings import settings_from_spec
from triptyque.keys import deployment_secrets, hash_key
from triptyque.monitoring.local import render as render_monitoring
from triptyque.spec import ServiceSpec
from triptyque.targets.base import admin_fleet, status_fleet
from triptyque.targets.processes import ProcessTable, ensure_port_free
from triptyque.types import Endpoint, NodeReport, Progress
from triptyque.wait import WaitTimeout, wait_http

ENGINE_START_TIMEOUT = 600.0
SERVICES = ("engine", "gateway", "webhook", "alertmanager", "prometheus")


def _env_port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class LocalPorts:
    """Ports of the local monitoring stack (the engine and gateway ports come from the spec)."""

    prometheus: int = field(default_factory=lambda: _env_port("TRIPTYQUE_LOCAL_PROMETHEUS_PORT", 19090))
    alertmanager: int = field(default_factory=lambda: _env_port("TRIPTYQUE_LOCAL_ALERTMANAGER_PORT", 19093))
    webhook: int = field(default_factory=lambda: _env_port("TRIPTYQUE_LOCAL_WEBHOOK_PORT", 19094))


def _tool(env_var: str, name: str, install: str) -> str:
    configured = os.environ.get(env_var)
    path = shutil.which(configured) if configured else shutil.which(name)
    if not path:
        where = f"{env_var}={configured} is not an executable" if configured else f"{name} not found"
        raise MissingToolError(f"{where}: {install}, or set {env_var}=/path/to/{name}")
    return path


class LocalTarget:
    name = "local"

    def __init__(self, spec: ServiceSpec, root: Path, ports: LocalPorts | None = None) -> None:
        self.spec, self.root = spec, root
        self.ports = ports or LocalPorts()
        self.processes = ProcessTable(root / "run", root / "logs")
        self.state_dir = root / "state"
        # The audit chain's HMAC key: beside the state folder, not in it, so whoever can
        # rewrite the state cannot forge an entry (the gateway creates it, mode 600).
        self.audit_key_path = root / "audit.key"

    def running(self) -> list[str]:
        """The services of this target whose process is alive."""
        return [name for name in SERVICES if (p := self.processes.get(name)) and p.alive()]

    def drill_hooks(self) -> LocalHooks:
        from triptyque.targets.local_hooks import LocalHooks

        return LocalHooks(self)

    # ---- endpoints and secrets -----------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.gateway.port}"

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.engine.port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.alertmanager}"

    @property
    def alerts_file(self) -> Path:
        return self.root / "alerts.jsonl"

    def secrets(self, create: bool = False) -> dict[str, str]:
        """{"api_key": ..., "admin_key": ...}, generated on first use, readable by the owner only."""
        return deployment_secrets(self.root, create=create,
                                  missing=f"no local deployment in {self.root}: run `triptyque up local` first")

    # ---- up ------------------------------------------------------------------------------

    def _preflight(self) -> tuple[str, str]:
        if importlib.util.find_spec("vllm") is None:
            raise MissingToolError(
                "vLLM is not installed in this Python: run `make venv` (CPU build, extra `cpu`) "
                "or `pip install -e '.[cpu]'`"
            )
        prometheus = _tool("TRIPTYQUE_PROMETHEUS", "prometheus", "install it with `apt-get install prometheus`")
        alertmanager = _tool("TRIPTYQUE_ALERTMANAGER", "prometheus-alertmanager",
                             "install it with `apt-get install prometheus-alertmanager`")
        running = self.running()
        if running:
            raise TargetError(f"local target already running ({', '.join(running)}): "
                              "run `triptyque status` or `triptyque down local`")
        spec, ports = self.spec, self.ports
        for port, what, fix in (
            (spec.engine.port, "engine", "change targets.local.engine.port in serving/service.yaml"),
            (spec.gateway.port, "gateway", "change targets.local.gateway.port in serving/service.yaml"),
            (ports.prometheus, "prometheus", "set TRIPTYQUE_LOCAL_PROMETHEUS_PORT"),
            (ports.alertmanager, "alertmanager", "set TRIPTYQUE_LOCAL_ALERTMANAGER_PORT"),
            (ports.webhook, "alert webhook", "set TRIPTYQUE_LOCAL_WEBHOOK_PORT"),
        ):
            ensure_port_free(port, what, f"stop what uses it, or {fix}")
        return prometheus, alertmanager

    def _write_gateway_settings(self, secrets: dict[str, str]) -> Path:
        settings = settings_from_spec(
            self.spec, upstream_url=self.engine_url, state_dir=self.state_dir.resolve(),
            extra_api_keys={"demo": hash_key(secrets["api_key"])},
            extra_admin_keys={"local-admin": hash_key(secrets["admin_key"])},
        ).model_copy(update={"audit_key_path": self.audit_key_path.resolve()})
        path = self.root / "gateway.json"
        path.write_text(settings.model_dump_json(indent=2))
        return path

    def _start_engine(self) -> None:
        self.processes.start(
            "engine", [sys.executable, *engine_args(self.spec)],
            env={**self.spec.engine.env, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"},
        )

    def up(self, progress: Progress) -> list[Endpoint]:
        prometheus, alertmanager = self._preflight()
        secrets = self.secrets(create=True)
        settings_path = self._write_gateway_settings(secrets)
        folder = self.root / "monitoring"
        monitoring = render_monitoring(
            self.spec, folder, gateway=f"127.0.0.1:{self.spec.gateway.port}",
            engine=f"127.0.0.1:{self.spec.engine.port}", alertmanager=f"127.0.0.1:{self.ports.alertmanager}",
            webhook=f"127.0.0.1:{self.ports.webhook}",
        )
        progress("starting the engine (vLLM)")
        self._start_engine()
        progress("starting the gateway, the alert webhook and Alertmanager")
        self.processes.start("gateway", [sys.executable, "-m", "triptyque.gateway", "--settings", str(settings_path)])
        self.processes.start("webhook", [sys.executable, "-m", "triptyque.monitoring.webhook", "--host", "127.0.0.1",
                                         "--port", str(self.ports.webhook), "--out", str(self.alerts_file)])
        self.processes.start("alertmanager", monitoring.alertmanager_argv(
            f"127.0.0.1:{self.ports.alertmanager}", folder / "alertmanager-data", alertmanager))
        try:
            self._wait("gateway", f"{self.gateway_url}/healthz", 30, progress)
            self._wait("webhook", f"http://127.0.0.1:{self.ports.webhook}/healthz", 30, progress)
            self._wait("alertmanager", f"{self.alertmanager_url}/-/ready", 30, progress)
            self._wait("engine", f"{self.engine_url}/health", ENGINE_START_TIMEOUT, progress)
            # Prometheus starts last, so a loading engine does not fire EngineDown.
            progress("starting Prometheus")
            self.processes.start("prometheus", monitoring.prometheus_argv(
                f"127.0.0.1:{self.ports.prometheus}", folder / "prometheus-data", prometheus))
            self._wait("prometheus", f"{self.prometheus_url}/-/ready", 30, progress)
        except TargetError:
            self.down(lambda _msg: None)
            raise
        return self.endpoints()

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("gateway (OpenAI API)", f"{self.gateway_url}/v1"),
                Endpoint("engine (vLLM, loopback only)", self.engine_url),
                Endpoint("prometheus", self.prometheus_url),
                Endpoint("alertmanager", self.alertmanager_url),
                Endpoint("alerts delivered (file)", str(self.alerts_file))]

    def _wait(self, name: str, url: str, timeout: float, progress: Progress) -> None:
        log = self.root / "logs" / f"{name}.log"

        def exited() -> str | None:
            managed = self.processes.get(name)
            if managed is not None and managed.alive():
                return None
            tail = managed.tail() if managed else ""
            raise TargetError(f"{name} exited during start; see {log}. Last lines:\n{tail}")

        try:
            waited = wait_http(url, timeout=timeout, interval=0.5, abort=exited,
                               on_wait=lambda s: progress(f"waiting for {name} ({s:.0f} s)"))
        except WaitTimeout:
            raise TargetError(f"{name} not ready after {timeout:.0f} s; see {log}") from None
        progress(f"{name} ready after {waited:.1f} s")

    # ---- down, status, kill ----------------------------------------------------------------

    def down(self, progress: Progress) -> None:
        for name in ("prometheus", "alertmanager", "webhook", "gateway", "engine"):
            if self.processes.stop(name):
                progress(f"stopped {name}")

    def gateway_endpoint(self) -> list[Endpoint]:
        return [Endpoint("local", self.gateway_url)]

    def status(self) -> list[NodeReport]:
        report = asyncio.run(status_fleet(self.gateway_endpoint()))[0]
        report.extra = {name: bool((p := self.processes.get(name)) and p.alive()) for name in SERVICES}
        return [report]

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        reports = self._admin("kill", operator, reason)
        if hard and self.spec.kill_switch.stop_engine_on_hard_kill:
            started = time.perf_counter()
            stopped = self.processes.stop("engine")
            reports[0].extra["engine_stopped"] = stopped
            reports[0].extra["engine_stopped_seconds"] = round(time.perf_counter() - started, 3)
        return reports

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        engine = self.processes.get("engine")
        restart: dict[str, object] = {}
        if engine is None or not engine.alive():
            (progress or (lambda _m: None))("the engine was stopped (hard kill): starting it again")
            started = time.perf_counter()
            self._start_engine()
            self._wait("engine", f"{self.engine_url}/health", ENGINE_START_TIMEOUT, progress or (lambda _m: None))
            restart = {"engine_started": True, "engine_started_seconds": round(time.perf_counter() - started, 3)}
        reports = self._admin("resume", operator, reason)
        reports[0].extra.update(restart)
        return reports

    def _admin(self, action: str, operator: str, reason: str) -> list[NodeReport]:
        admin_key = self.secrets()["admin_key"]
        return asyncio.run(admin_fleet(self.gateway_endpoint(), admin_key, action,  # type: ignore[arg-type]
                                       operator, reason))

