"""The proxy: admitted requests go to the engine, answers come back (JSON or a stream).

Request path for ``/v1/*``: kill switch -> API key -> concurrency slot -> body checks ->
engine. A kill, a timeout, a dead engine or the client leaving while waiting on the
engine becomes a ``Refusal`` (the engine request is closed, so it stops working); a
stream is handed to ``ProxyStream``, which frees the slot when it ends. The slot is a
``Slot`` released exactly once whatever fails on the way.

Only an allowlist of client headers reaches the engine (``FORWARDED``), and the engine's
redirects, server errors and non-JSON refusals become the gateway's own JSON errors
(the detail is logged, never passed on: a traceback names internal paths).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from triptyque.gateway.accounting import Accounting
from triptyque.gateway.admission import Slot, Slots, authenticate, read_json
from triptyque.gateway.errors import Refusal, refusal_response
from triptyque.gateway.interrupt import Interrupt
from triptyque.gateway.killswitch import KillSwitch
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.stream import ProxyStream, StreamContext

log = logging.getLogger("triptyque.gateway")

PROXIED = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings")
# The client headers the engine gets (besides the gateway's own x-request-id): nothing
# hop-by-hop, no credentials or cookies, no Expect (the gateway has read the body already).
FORWARDED = frozenset({b"accept", b"content-type", b"user-agent", b"traceparent", b"tracestate"})
STOPPED = "Service stopped by operator decision. Nothing is served until it is resumed."


def _nothing() -> None:
    return None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _client_gone(receive: Receive, interrupt: Interrupt) -> asyncio.Future[None]:
    """Fire ``interrupt`` with "client_gone" when the client hangs up; cancel the result to stop."""
    gone = asyncio.ensure_future(_disconnected(receive))
    gone.add_done_callback(lambda done: None if done.cancelled() or done.exception()
                           else interrupt.fire("client_gone"))
    return gone


class ClientGone(Exception):
    """The client hung up while the engine worked for it (answered with nothing)."""


class Proxy:
    def __init__(self, settings: GatewaySettings, killswitch: KillSwitch, accounting: Accounting,
                 slots: Slots, transport: httpx.AsyncBaseTransport) -> None:
        self.settings, self.killswitch, self.accounting, self.slots = settings, killswitch, accounting, slots
        self.transport = transport
        limits = settings.limits
        timeout = httpx.Timeout(
            connect=limits.connect_timeout_seconds,
            read=limits.first_byte_timeout_seconds,
            write=limits.first_byte_timeout_seconds,
            pool=limits.connect_timeout_seconds,
        )
        # The hot path builds its requests itself and hands them to the transport: a client's
        # URL merging, default headers, cookies and redirect handling cost a fifth of the
        # gateway's CPU per request and do nothing for a fixed upstream.
        base = settings.upstream_url.rstrip("/")
        self._engine_urls = {route: httpx.URL(base + route) for route in PROXIED}
        self._timeouts = timeout.as_dict()
        self._forwarded = FORWARDED | {name.lower().encode("latin-1") for name in settings.forward_headers}
        self._stream_context = StreamContext(
            accounting=accounting, limits=limits, cut_on_kill=self.interrupt_on_kill,
            stopped_message=killswitch.stopped_message,
        )

    def stopped_for(self, request: Request) -> str:
        """The kill switch's message: who and why only for a caller with a valid key."""
        try:
            authenticate(request, self.settings.api_keys, "API")
        except Refusal:
            return STOPPED
        return self.killswitch.stopped_message()

    async def handle(self, request: Request) -> Response | ProxyStream:
        route = request.scope["path"]  # request.url would build a URL object per request
        started = time.perf_counter()
        key = "-"
        try:
            if self.killswitch.engaged:
                raise Refusal(503, self.stopped_for(request), "kill_switch_engaged")
            key = authenticate(request, self.settings.api_keys, "API")
            slot = self.slots.take()
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        handed_over = False
        try:
            response = await self._forward(request, route, key, started, slot)
            handed_over = isinstance(response, ProxyStream)
            return response
        finally:
            if not handed_over:
                slot.release()

    def _headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        forwarded = self._forwarded
        headers = [(k, v) for k, v in request.scope["headers"] if k in forwarded]
        headers.append((b"x-request-id", request.state.request_id.encode("latin-1")))
        return headers

    async def _forward(self, request: Request, route: str, key: str, started: float,
                       slot: Slot) -> Response | ProxyStream:
        method = request.method
        try:
            raw, body = (b"", {}) if method in ("GET", "HEAD") else await read_json(request, self.settings)
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        upstream_request = httpx.Request("GET" if method == "HEAD" else method, self._engine_urls[route],
                                         content=raw, headers=self._headers(request),
                                         extensions={"timeout": self._timeouts})
        metrics = self.accounting.metrics
        try:
            upstream, content = await self._exchange(request, upstream_request, body.get("stream") is True)
        except ClientGone:
            metrics.client_gone.labels(route).inc()
            self.accounting.record(request, route, 499, key, started)
            return Response(b"", status_code=499)
        except Refusal as refusal:
            reason = {504: "timeout", 502: "connect"}.get(refusal.status)
            if reason:
                metrics.upstream_errors.labels(route, reason).inc()
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        if content is None:
            return ProxyStream(self._stream_context, request, upstream, route, key, started, slot.release)
        status = upstream.status_code
        content_type = upstream.headers.get("content-type", "")
        replaced = self._engine_error(route, status, content_type, content)
        if replaced is not None:
            self.accounting.record(request, route, replaced.status, key, started)
            return refusal_response(request, replaced)
        if status == 200:
            self.accounting.count_usage(key, content)
        self.accounting.record(request, route, status, key, started)
        out_headers = {"x-request-id": request.state.request_id}
        if content_type and content_type.isascii() and content_type.isprintable():
            out_headers["content-type"] = content_type
        return Response(content, status_code=status, headers=out_headers)

    def _engine_error(self, route: str, status: int, content_type: str, content: bytes) -> Refusal | None:
        """The gateway's own error for an engine answer a client should not get as it is."""
        if status < 300:
            return None
        metrics = self.accounting.metrics
        if 400 <= status < 500 and content_type.startswith("application/json") and _json_object(content):
            return None  # the engine's own OpenAI-style refusal of the request: useful as it is
        if status >= 500:
            metrics.upstream_errors.labels(route, "status_5xx").inc()
        else:
            metrics.upstream_errors.labels(route, "status_other").inc()
        log.warning("engine error answer replaced", extra={
            "event": "engine_error", "route": route, "upstream_status": status,
            "upstream_bytes": len(content)})
        if 300 <= status < 400:
            return Refusal(502, "The engine answered with a redirect; the gateway does not follow it.",
                           "upstream_redirect")
        if status >= 500:
            return Refusal(502, f"The engine failed (HTTP {status}); retry, or report it with the request id.",
                           "upstream_error")
        return Refusal(status if status in (400, 404, 413, 422, 429) else 502,
                       f"The engine refused the request (HTTP {status}).", "upstream_refused")

    async def _exchange(self, request: Request, upstream_request: httpx.Request,
                        wants_stream: bool) -> tuple[httpx.Response, bytes | None]:
        """Send to the engine and read its answer (None: a stream, to pass through).

        A kill, a timeout or a dead engine becomes a Refusal; the client hanging up,
        ClientGone. Either way the engine request is closed, so the engine stops."""
        interrupt = Interrupt()
        forget = self.interrupt_on_kill(interrupt)
        gone = _client_gone(request.receive, interrupt)
        upstream: httpx.Response | None = None
        handed_over = False
        wait = self.settings.limits.first_byte_timeout_seconds
        try:
            async with asyncio.timeout(wait) as deadline:
                upstream = await self._send(upstream_request)
                if wants_stream and upstream.status_code == 200 and upstream.headers.get(
                        "content-type", "").startswith("text/event-stream"):
                    handed_over = True
                    return upstream, None
                deadline.reschedule(asyncio.get_running_loop().time() + wait)
                content = await upstream.aread()
            return upstream, content
        except asyncio.CancelledError:
            reason = interrupt.settle()
            if reason is None:
                raise
            if reason == "client_gone":
                raise ClientGone from None
            self.accounting.metrics.streams_cut.labels("kill_switch").inc()
            raise Refusal(503, self.killswitch.stopped_message(), "kill_switch_engaged") from None
        except (TimeoutError, httpx.TimeoutException):
            raise Refusal(504, "The engine did not answer in time; try again or lower max_tokens.",
                          "upstream_timeout") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise Refusal(502, "The engine is unreachable; the service may be starting or down.",
                          "upstream_unavailable") from None
        finally:
            interrupt.disarm()
            forget()
            gone.cancel()
            if upstream is not None and not handed_over:
                await upstream.aclose()

    async def _send(self, upstream_request: httpx.Request) -> httpx.Response:
        response = await self.transport.handle_async_request(upstream_request)
        response.request = upstream_request
        return response

    def interrupt_on_kill(self, interrupt: Interrupt) -> Callable[[], None]:
        """Fire ``interrupt`` when the kill switch engages; returns the remover.

        With ``kill_switch.cut_streams: false`` a kill drains instead: what is in flight
        finishes, and only new requests are refused."""
        if not self.settings.kill_switch.cut_streams:
            return _nothing
        return self.killswitch.on_engage(lambda: interrupt.fire("kill_switch"))



def _json_object(content: bytes) -> bool:
    try:
        return isinstance(json.loads(content), dict)
    except (ValueError, RecursionError):
        return False
