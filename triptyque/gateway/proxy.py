"""The proxy: admitted requests go to the engine, answers come back (JSON or a stream).

Request path for ``/v1/*``: kill switch -> API key -> concurrency slot -> body checks ->
engine. A kill, a timeout or a dead engine while waiting on the engine becomes a
``Refusal``; a stream is handed to ``ProxyStream``, which frees the slot when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from triptyque.gateway.accounting import Accounting
from triptyque.gateway.admission import Slots, authenticate, read_json
from triptyque.gateway.errors import Refusal, refusal_response
from triptyque.gateway.interrupt import Interrupt
from triptyque.gateway.killswitch import KillSwitch
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.stream import ProxyStream, StreamContext

PROXIED = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings")
# Hop-by-hop and gateway-owned headers never forwarded to the engine.
_DROP = {"host", "authorization", "content-length", "connection", "keep-alive", "te",
         "transfer-encoding", "upgrade", "proxy-authorization", "accept-encoding"}


def _nothing() -> None:
    return None


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
        self._stream_context = StreamContext(
            accounting=accounting, limits=limits, cut_on_kill=self.interrupt_on_kill,
            stopped_message=killswitch.stopped_message, release=slots.release,
        )

    async def handle(self, request: Request) -> Response | ProxyStream:
        route = request.scope["path"]  # request.url would build a URL object per request
        started = time.perf_counter()
        key = "-"
        try:
            if self.killswitch.engaged:
                raise Refusal(503, self.killswitch.stopped_message(), "kill_switch_engaged")
            key = authenticate(request, self.settings.api_keys, "API")
            self.slots.take()
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        handed_over = False
        try:
            response = await self._forward(request, route, key, started)
            handed_over = isinstance(response, ProxyStream)
            return response
        finally:
            if not handed_over:
                self.slots.release()

    async def _forward(self, request: Request, route: str, key: str, started: float) -> Response | ProxyStream:
        try:
            raw, body = (b"", {}) if request.method == "GET" else await read_json(request, self.settings)
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        headers = {k: v for k, v in request.headers.items() if k not in _DROP}
        headers["x-request-id"] = request.state.request_id
        upstream_request = httpx.Request(request.method, self._engine_urls[route], content=raw,
                                         headers=headers, extensions={"timeout": self._timeouts})
        metrics = self.accounting.metrics
        try:
            upstream = await self._until_killed(self._send(upstream_request))
        except Refusal as refusal:
            reason = {504: "timeout", 502: "connect"}.get(refusal.status)
            if reason:
                metrics.upstream_errors.labels(route, reason).inc()
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        if upstream.status_code >= 500:
            metrics.upstream_errors.labels(route, "status_5xx").inc()
        is_stream = body.get("stream") is True and upstream.headers.get(
            "content-type", "").startswith("text/event-stream")
        if is_stream:
            return ProxyStream(self._stream_context, request, upstream, route, key, started)
        try:
            content = await self._until_killed(upstream.aread())
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        finally:
            await upstream.aclose()
        if upstream.status_code == 200:
            self.accounting.count_usage(key, content)
        self.accounting.record(request, route, upstream.status_code, key, started)
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

    def interrupt_on_kill(self, interrupt: Interrupt) -> Callable[[], None]:
        """Fire ``interrupt`` when the kill switch engages; returns the remover.

        With ``kill_switch.cut_streams: false`` a kill drains instead: what is in flight
        finishes, and only new requests are refused."""
        if not self.settings.kill_switch.cut_streams:
            return _nothing
        return self.killswitch.on_engage(lambda: interrupt.fire("kill_switch"))
