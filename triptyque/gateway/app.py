"""The gateway application: ``create_app(settings)`` builds it, state lives in ``lifespan``.

Request path for ``/v1/*``: kill switch -> API key -> concurrency limit -> body checks ->
engine. Every refusal is an OpenAI-style JSON error; every answer is counted in the
metrics with the key's *name* (never the key) and logged with a request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from triptyque.gateway.audit import AuditLog, AuditSink
from triptyque.gateway.errors import error_response
from triptyque.gateway.interrupt import Interrupt
from triptyque.gateway.killswitch import KillSwitch, PersistError
from triptyque.gateway.metrics import GatewayMetrics
from triptyque.gateway.openapi import OPENAPI
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.state import FileStateStore, KillState, StateStore
from triptyque.gateway.stream import ProxyStream
from triptyque.gateway.upstream import engine_transport
from triptyque.keys import match_key

log = logging.getLogger("triptyque.gateway")

PROXIED = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings")
# Hop-by-hop and gateway-owned headers never forwarded to the engine.
_DROP = {"host", "authorization", "content-length", "connection", "keep-alive", "te",
         "transfer-encoding", "upgrade", "proxy-authorization", "accept-encoding"}
_TEXT_LIMIT = 500


class Refusal(Exception):
    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def make_state(settings: GatewaySettings) -> tuple[StateStore, AuditSink]:
    if settings.state_backend == "kubernetes":
        from triptyque.gateway.state_k8s import ConfigMapAuditLog, ConfigMapStateStore

        assert settings.cluster is not None
        return ConfigMapStateStore(settings.cluster), ConfigMapAuditLog(settings.cluster)
    return FileStateStore(settings.state_path), AuditLog(settings.audit_path)


class Gateway:
    """Everything one gateway process holds; built in the app's lifespan."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        store: StateStore | None = None,
        audit: AuditSink | None = None,
        watch_interval: float | None = 0.5,
    ) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics(settings)
        default_store, default_audit = (store, audit) if store and audit else make_state(settings)
        self.killswitch = KillSwitch(store or default_store, audit or default_audit,
                                     on_change=self._kill_changed)
        limits = settings.limits
        timeout = httpx.Timeout(
            connect=limits.connect_timeout_seconds,
            read=limits.first_byte_timeout_seconds,
            write=limits.first_byte_timeout_seconds,
            pool=limits.connect_timeout_seconds,
        )
        self.transport = transport or engine_transport(limits.connect_timeout_seconds)
        self.client = httpx.AsyncClient(base_url=settings.upstream_url, timeout=timeout,
                                        transport=self.transport)
        # The hot path builds its requests itself and hands them to the transport: the
        # client's URL merging, default headers, cookies and redirect handling cost a
        # fifth of the gateway's CPU per request and do nothing for a fixed upstream.
        base = settings.upstream_url.rstrip("/")
        self._engine_urls = {route: httpx.URL(base + route) for route in PROXIED}
        self._timeouts = timeout.as_dict()
        self.in_flight = 0
        self._watch_interval = watch_interval

    def _kill_changed(self, state: KillState) -> None:
        self.metrics.kill_engaged.set(1 if state.engaged else 0)
        self.metrics.kill_changed.set(state.changed_at or time.time())
        log.warning("kill switch %s", "engaged" if state.engaged else "released",
                    extra={"event": "kill_switch", "engaged": state.engaged,
                           "operator": state.operator, "reason": state.reason})

    async def start(self) -> None:
        self.killswitch.start(self._watch_interval)

    async def close(self) -> None:
        await self.killswitch.stop()
        await self.client.aclose()

    # ---- admission -------------------------------------------------------------------------

    def _bearer(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def authenticate(self, request: Request, hashes: dict[str, str], what: str) -> str:
        token = self._bearer(request)
        if token is None:
            raise Refusal(401, f"Missing {what} key: send 'Authorization: Bearer <key>'.",
                          "missing_api_key")
        name = match_key(token, hashes)
        if name is None:
            raise Refusal(401, f"Invalid {what} key.", "invalid_api_key")
        return name

    async def read_json(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        limit = self.settings.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, f"Request body of {declared} bytes exceeds the {limit}-byte limit.",
                          "body_too_large")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refusal(415, "Send the body as JSON with 'Content-Type: application/json'.",
                          "unsupported_media_type")
        chunks, size = [], 0
        wait = self.settings.limits.idle_timeout_seconds
        try:
            # A client trickling its body must not hold a concurrency slot for ever.
            async with asyncio.timeout(wait):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise Refusal(413, f"Request body exceeds the {limit}-byte limit.", "body_too_large")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refusal(408, f"The request body did not arrive within {wait:g} s.", "body_timeout") from None
        raw = b"".join(chunks)
        try:
            # JSON over HTTP is UTF-8 (RFC 8259); json.loads(bytes) would guess UTF-16 or 32
            # from NUL bytes and call a valid UTF-8 body badly encoded.
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise Refusal(400, "Request body is not valid UTF-8.", "invalid_encoding") from None
        except ValueError as exc:
            raise Refusal(400, f"Request body is not valid JSON: {exc}.", "invalid_json") from None
        if not isinstance(body, dict):
            raise Refusal(400, "Request body must be a JSON object.", "invalid_json")
        return raw, body

    # ---- accounting ------------------------------------------------------------------------

    def record(self, request: Request, route: str, status: int, key: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(route, str(status), key).inc()
        self.metrics.duration.labels(route).observe(elapsed)
        log.info("request", extra={
            "event": "request", "request_id": request.state.request_id, "route": route,
            "method": request.method, "status": status, "key": key,
            "duration_ms": round(elapsed * 1000, 3),
        })

    def count_usage(self, key: str, body: bytes) -> None:
        try:
            usage = json.loads(body).get("usage") or {}
        except (ValueError, AttributeError):
            return
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens")
            if isinstance(value, int) and value > 0:
                self.metrics.tokens.labels(key, kind).inc(value)

    # ---- the proxy ---------------------------------------------------------------------------

    async def proxy(self, request: Request) -> Response | ProxyStream:
        route = request.scope["path"]  # request.url would build a URL object per request
        started = time.perf_counter()
        key = "-"
        try:
            if self.killswitch.engaged:
                raise Refusal(503, self.stopped_message(), "kill_switch_engaged")
            key = self.authenticate(request, self.settings.api_keys, "API")
            limit = self.settings.limits.max_concurrent_requests
            if self.in_flight >= limit:
                raise Refusal(429, f"Too many concurrent requests (limit {limit}); retry shortly.",
                              "concurrency_limit", {"retry-after": "1"})
            self.in_flight += 1
            self.metrics.in_flight.set(self.in_flight)
        except Refusal as refusal:
            self.record(request, route, refusal.status, key, started)
            return self.refuse(request, refusal)
        handed_over = False
        try:
            response = await self._forward(request, route, key, started)
            handed_over = isinstance(response, ProxyStream)
            return response
        finally:
            if not handed_over:
                self.release()

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)

    async def _forward(self, request: Request, route: str, key: str, started: float) -> Response | ProxyStream:
        try:
            raw, body = (b"", {}) if request.method == "GET" else await self.read_json(request)
        except Refusal as refusal:
            self.record(request, route, refusal.status, key, started)
            return self.refuse(request, refusal)
        headers = {k: v for k, v in request.headers.items() if k not in _DROP}
        headers["x-request-id"] = request.state.request_id
        upstream_request = httpx.Request(request.method, self._engine_urls[route], content=raw,
                                         headers=headers, extensions={"timeout": self._timeouts})
        try:
            upstream = await self._until_killed(self._send(upstream_request))
        except Refusal as refusal:
            reason = {504: "timeout", 502: "connect"}.get(refusal.status)
            if reason:
                self.metrics.upstream_errors.labels(route, reason).inc()
            self.record(request, route, refusal.status, key, started)
            return self.refuse(request, refusal)
        if upstream.status_code >= 500:
            self.metrics.upstream_errors.labels(route, "status_5xx").inc()
        is_stream = body.get("stream") is True and upstream.headers.get(
            "content-type", "").startswith("text/event-stream")
        if is_stream:
            return ProxyStream(self, request, upstream, route, key, started)
        try:
            content = await self._until_killed(upstream.aread())
        except Refusal as refusal:
            self.record(request, route, refusal.status, key, started)
            return self.refuse(request, refusal)
        finally:
            await upstream.aclose()
        if upstream.status_code == 200:
            self.count_usage(key, content)
        self.record(request, route, upstream.status_code, key, started)
        out_headers = {"x-request-id": request.state.request_id}
        if "content-type" in upstream.headers:
            out_headers["content-type"] = upstream.headers["content-type"]
        return Response(content, status_code=upstream.status_code, headers=out_headers)

    async def _send(self, upstream_request: httpx.Request) -> httpx.Response:
        response = await self.transport.handle_async_request(upstream_request)
        response.request = upstream_request
        return response

    async def _until_killed(self, awaitable: Any) -> Any:
        """Await an engine call; a kill, a timeout or a dead engine becomes a Refusal."""
        interrupt = Interrupt()
        forget = self.interrupt_on_kill(interrupt)
        try:
            async with asyncio.timeout(self.settings.limits.first_byte_timeout_seconds):
                return await awaitable
        except asyncio.CancelledError:
            if interrupt.settle() is None:
                raise
            self.metrics.streams_cut.labels("kill_switch").inc()
            raise Refusal(503, self.stopped_message(), "kill_switch_engaged") from None
        except (TimeoutError, httpx.TimeoutException):
            raise Refusal(504, "The engine did not answer in time; try again or lower max_tokens.",
                          "upstream_timeout") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise Refusal(502, "The engine is unreachable; the service may be starting or down.",
                          "upstream_unavailable") from None
        finally:
            interrupt.disarm()
            forget()

    def interrupt_on_kill(self, interrupt: Interrupt) -> Callable[[], None]:
        """Fire ``interrupt`` when the kill switch engages; returns the remover.

        With ``kill_switch.cut_streams: false`` a kill drains instead: what is in flight
        finishes, and only new requests are refused."""
        if not self.settings.kill_switch.cut_streams:
            return _nothing
        return self.killswitch.on_engage(lambda: interrupt.fire("kill_switch"))

    def stopped_message(self) -> str:
        state = self.killswitch.state
        who = f" by {state.operator}" if state.operator else ""
        why = f": {state.reason}" if state.reason else ""
        return f"Service stopped by operator decision{who}{why}. Nothing is served until it is resumed."

    def refuse(self, request: Request, refusal: Refusal) -> JSONResponse:
        return error_response(refusal.status, refusal.message, refusal.code,
                              request_id=request.state.request_id, headers=refusal.headers)

    # ---- admin and probes --------------------------------------------------------------------

    async def admin(self, request: Request) -> Response:
        route = request.scope["path"]
        started = time.perf_counter()
        key = "-"
        try:
            key = self.authenticate(request, self.settings.admin_keys, "admin")
            if request.method == "GET":
                self.record(request, route, 200, key, started)
                return JSONResponse(self.status_body())
            if not self.settings.kill_switch.enabled:
                raise Refusal(403, "The kill switch is disabled in the service spec.", "kill_switch_disabled")
            _, body = await self.read_json(request)
            operator, reason = self._operator_and_reason(body)
            action = route.rsplit("/", 1)[-1]
            change = self.killswitch.engage if action == "kill" else self.killswitch.release
            try:
                state, changed = await change(operator, reason, f"gateway:{key}")
            except PersistError as exc:
                raise Refusal(500, str(exc), "state_not_persisted") from None
        except Refusal as refusal:
            self.record(request, route, refusal.status, key, started)
            return self.refuse(request, refusal)
        self.record(request, route, 200, key, started)
        return JSONResponse({**self.status_body(), "changed": changed, "operator": state.operator})

    def _operator_and_reason(self, body: dict[str, Any]) -> tuple[str, str]:
        operator, reason = body.get("operator"), body.get("reason")
        if not isinstance(operator, str) or not operator.strip() or len(operator) > 100:
            raise Refusal(400, "Field 'operator' is required: who takes this decision (1-100 chars).",
                          "missing_operator")
        if reason is None and not self.settings.kill_switch.require_reason:
            reason = ""
        if not isinstance(reason, str) or (self.settings.kill_switch.require_reason and not reason.strip()):
            raise Refusal(400, "Field 'reason' is required: why the service is stopped or resumed.",
                          "missing_reason")
        if len(reason) > _TEXT_LIMIT:
            raise Refusal(400, f"Field 'reason' is longer than {_TEXT_LIMIT} characters.", "reason_too_long")
        return operator.strip(), reason.strip()

    def status_body(self) -> dict[str, Any]:
        state = self.killswitch.state
        return {
            "engaged": state.engaged, "operator": state.operator, "reason": state.reason,
            "changed_at": state.changed_at, "fail_closed": self.killswitch.fail_closed_reason,
            "in_flight": self.in_flight, "target": self.settings.target,
        }

    async def readyz(self, request: Request) -> Response:
        if self.killswitch.engaged:
            return JSONResponse({"ready": False, "kill_switch_engaged": True,
                                 "reason": self.stopped_message()}, status_code=503)
        try:
            probe = await self.client.get("/health", timeout=2.0)
            engine_ok = probe.status_code == 200
        except httpx.HTTPError:
            engine_ok = False
        if not engine_ok:
            return JSONResponse({"ready": False, "kill_switch_engaged": False,
                                 "reason": "engine not ready"}, status_code=503)
        return JSONResponse({"ready": True, "kill_switch_engaged": False, "reason": ""})


def _nothing() -> None:
    return None


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _proxy(request: Request) -> Response | ProxyStream:
    return await _gateway(request).proxy(request)


async def _admin(request: Request) -> Response:
    return await _gateway(request).admin(request)


async def _readyz(request: Request) -> Response:
    return await _gateway(request).readyz(request)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(_gateway(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


class RequestId:
    """Give every request an id (kept from X-Request-ID when sane) and turn 404/405 into JSON."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
            rid = given if 0 < len(given) <= 64 and given.isprintable() else uuid.uuid4().hex
            scope.setdefault("state", {})["request_id"] = rid
        await self.app(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = "No such route." if status == 404 else "Method not allowed on this route."
    return error_response(status, message, "not_found" if status == 404 else "method_not_allowed",
                          request_id=getattr(request.state, "request_id", ""))


def create_app(settings: GatewaySettings, **gateway_options: Any) -> Starlette:
    """Build the ASGI app; ``gateway_options`` go to ``Gateway`` (tests pass a transport)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings, **gateway_options)
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
    app.add_middleware(RequestId)
    return app
