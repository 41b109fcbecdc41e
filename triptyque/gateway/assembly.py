"""One gateway process assembled: its settings, kill switch and stores, the admission,
proxy, accounting and admin parts wired together. ``app.py`` builds one in its lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import httpx

from triptyque.errors import StateError
from triptyque.gateway.accounting import Accounting
from triptyque.gateway.admin import Admin
from triptyque.gateway.admission import Slots
from triptyque.gateway.audit import AuditLog, AuditSink
from triptyque.gateway.killswitch import KillSwitch
from triptyque.gateway.metrics import GatewayMetrics
from triptyque.gateway.proxy import Proxy
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.state import FileStateStore, KillState, StateStore, restrict
from triptyque.gateway.upstream import engine_transport
from triptyque.keys import audit_key

log = logging.getLogger("triptyque.gateway")


def load_key(settings: GatewaySettings) -> tuple[bytes | None, str | None]:
    """The audit key (created on first start) or why it cannot be had."""
    if settings.audit_key_path is None:
        return None, None
    try:
        return audit_key(settings.audit_key_path, create=True), None
    except StateError as exc:
        return None, str(exc)


def make_state(settings: GatewaySettings, key: bytes | None = None) -> tuple[StateStore, AuditSink]:
    if settings.state_backend == "kubernetes":
        from triptyque.gateway.state_k8s import ConfigMapAuditLog, ConfigMapStateStore

        assert settings.cluster is not None
        return ConfigMapStateStore(settings.cluster), ConfigMapAuditLog(settings.cluster, key=key)
    with contextlib.suppress(OSError):  # a folder that cannot be made shows at the first load or save
        restrict(settings.state_path.parent)
    return FileStateStore(settings.state_path), AuditLog(settings.audit_path, key=key)


@dataclass
class Gateway:
    """Everything one gateway process holds; built in the app's lifespan."""

    settings: GatewaySettings
    accounting: Accounting
    killswitch: KillSwitch
    slots: Slots
    proxy: Proxy
    admin: Admin
    engine: httpx.AsyncClient
    watch_interval: float | None

    @property
    def metrics(self) -> GatewayMetrics:
        return self.accounting.metrics

    @property
    def in_flight(self) -> int:
        return self.slots.in_flight

    async def start(self) -> None:
        self.killswitch.start(self.watch_interval)

    async def close(self) -> None:
        await self.killswitch.stop()
        await self.engine.aclose()


def build_gateway(
    settings: GatewaySettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: StateStore | None = None,
    audit: AuditSink | None = None,
    watch_interval: float | None = 0.5,
) -> Gateway:
    accounting = Accounting(settings)
    metrics = accounting.metrics

    def kill_changed(state: KillState) -> None:
        metrics.kill_engaged.set(1 if state.engaged else 0)
        metrics.kill_changed.set(state.changed_at or time.time())
        log.warning("kill switch %s", "engaged" if state.engaged else "released",
                    extra={"event": "kill_switch", "engaged": state.engaged,
                           "operator": state.operator, "reason": state.reason})

    def audit_moved(seq: int, head: str) -> None:
        metrics.audit_seq.set(seq)
        metrics.audit_head.set(int(head[:13], 16))

    key, key_error = load_key(settings)
    default_store, default_audit = (store, audit) if store and audit else make_state(settings, key)
    killswitch = KillSwitch(store or default_store, audit or default_audit, on_change=kill_changed,
                            on_audit=audit_moved, key=key, key_error=key_error,
                            on_persist_failure=lambda _why: metrics.audit_write_failures.inc())
    slots = Slots(settings.limits.max_concurrent_requests, metrics)
    transport = transport or engine_transport(settings.limits.connect_timeout_seconds)
    engine = httpx.AsyncClient(base_url=settings.upstream_url, transport=transport,
                               timeout=settings.limits.connect_timeout_seconds)
    return Gateway(
        settings=settings, accounting=accounting, killswitch=killswitch, slots=slots,
        proxy=Proxy(settings, killswitch, accounting, slots, transport),
        admin=Admin(settings, killswitch, accounting, slots, engine),
        engine=engine, watch_interval=watch_interval,
    )
