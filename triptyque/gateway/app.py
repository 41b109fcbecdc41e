"""The gateway application: ``create_app(settings)`` builds it and routes requests.

The concepts live in their own modules: ``admission`` (keys, limits, body checks),
``proxy`` and ``stream`` (the engine request and the answer), ``accounting`` (metrics
and usage), ``admin`` (kill, resume, status, readiness), ``killswitch`` with its
stores. This module only wires them in the app's lifespan and maps routes to them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from triptyque.errors import StateError
from triptyque.gateway.accounting import Accounting
from triptyque.gateway.admin import Admin
from triptyque.gateway.admission import Slots
from triptyque.gateway.audit import AuditLog, AuditSink
from triptyque.gateway.errors import error_response
from triptyque.gateway.killswitch import KillSwitch
from triptyque.gateway.metrics import GatewayMetrics
from triptyque.gateway.openapi import OPENAPI
from triptyque.gateway.proxy import PROXIED, Proxy
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.state import FileStateStore, KillState, StateStore, restrict
from triptyque.gateway.stream import ProxyStream
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
                            on_audit=audit_moved, key=key, key_error=key_error)
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


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _proxy(request: Request) -> Response | ProxyStream:
    return await _gateway(request).proxy.handle(request)


async def _admin(request: Request) -> Response:
    return await _gateway(request).admin.handle(request)


async def _readyz(request: Request) -> Response:
    return await _gateway(request).admin.readyz(request)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(_gateway(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised, without the machine's paths: module file, line, function."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}"


class RequestId:
    """Give every request an id (kept from X-Request-ID when sane); answer any failure in JSON.

    An exception that escapes a route is logged (with the request id, never the body),
    counted in ``triptyque_gateway_internal_errors_total`` and answered as a JSON 500,
    or, once the answer has started, ends the connection."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.metrics: GatewayMetrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if 0 < len(given) <= 64 and given.isascii() and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = finished = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished
            started = started or message["type"] == "http.response.start"
            finished = message["type"] == "http.response.body" and not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            gateway = getattr(scope.get("app"), "state", None)
            metrics = getattr(getattr(gateway, "gateway", None), "metrics", None)
            if metrics is not None:
                metrics.internal_errors.inc()
                metrics.requests.labels(scope.get("path", ""), "500", "-").inc()
            log.error("internal error: %s at %s", type(exc).__name__, _where(exc),
                      extra={"event": "internal_error", "request_id": rid, "route": scope.get("path", "")})
            if started:  # the answer is cut short; end it so the connection is not left hanging
                if not finished:
                    with contextlib.suppress(Exception):
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            response = error_response(500, "The gateway failed on this request; report it with the request id.",
                                      "internal_error", request_id=rid)
            await response(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = "No such route." if status == 404 else "Method not allowed on this route."
    return error_response(status, message, "not_found" if status == 404 else "method_not_allowed",
                          request_id=getattr(request.state, "request_id", ""))


def create_app(settings: GatewaySettings, **gateway_options: Any) -> Starlette:
    """Build the ASGI app; ``gateway_options`` go to ``build_gateway`` (tests pass a transport)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = build_gateway(settings, **gateway_options)
        await gateway.start()
        app.state.gateway = gateway
        try:
            yield
        finally:
            await gateway.close()

    routes = [Route(path, _proxy, methods=["GET"] if path == "/v1/models" else ["POST"]) for path in PROXIED]
    routes += [
        Route("/admin/kill", _admin, methods=["POST"]),
        Route("/admin/resume", _admin, methods=["POST"]),
        Route("/admin/status", _admin, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_found})
    # A redirect to the slash-less path would echo the client's Host header into Location.
    app.router.redirect_slashes = False
    app.add_middleware(RequestId)
    return app
