"""Pass an engine's server-sent events through as they arrive, and cut them when told.

Each chunk is sent on as soon as the engine writes it (never buffered). The stream
ends early, with a final JSON error event, when the kill switch is engaged, the
engine breaks off, or the engine stays silent past the idle timeout; if the client
goes away the engine request is closed so the engine stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from triptyque.gateway.errors import sse_error
from triptyque.gateway.interrupt import Interrupt

if TYPE_CHECKING:
    from triptyque.gateway.app import Gateway


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ProxyStream:
    def __init__(
        self, gateway: Gateway, request: Request, upstream: httpx.Response, route: str, key: str,
        started: float,
    ) -> None:
        self.gateway, self.request, self.upstream = gateway, request, upstream
        self.route, self.key, self.started = route, key, started

    def _count_usage(self, chunk: bytes) -> None:
        if b'"usage":{' not in chunk and b'"usage": {' not in chunk:
            return
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: {") and b'"usage"' in line:
                self.gateway.count_usage(self.key, line[6:])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        headers = [
            (b"content-type", self.upstream.headers["content-type"].encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self.request.state.request_id.encode("latin-1")),
        ]
        interrupt = Interrupt()
        forget = gateway.interrupt_on_kill(interrupt)
        gone = asyncio.ensure_future(_disconnected(receive))
        gone.add_done_callback(lambda done: None if done.cancelled() else interrupt.fire("client_gone"))
        cut: str | None = None
        try:
            cut = await self._pass_through(send, interrupt, headers)
            interrupt.disarm()
            if cut == "client_gone":
                return
            if cut is not None:
                await send({"type": "http.response.body", "body": self._last_event(cut), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            interrupt.disarm()
            forget()
            gone.cancel()
            with contextlib.suppress(Exception):
                await self.upstream.aclose()
            if cut is not None and cut != "client_gone":
                gateway.metrics.streams_cut.labels(cut).inc()
                if cut != "kill_switch":
                    gateway.metrics.upstream_errors.labels(self.route, "timeout" if cut == "timeout"
                                                           else "protocol").inc()
            gateway.release()
            gateway.record(self.request, self.route, self.upstream.status_code, self.key, self.started)

    def _last_event(self, cut: str) -> bytes:
        if cut == "kill_switch":
            return sse_error(self.gateway.stopped_message(), "kill_switch_engaged", 503)
        if cut == "timeout":
            return sse_error("The engine stopped sending; the stream timed out.", "upstream_timeout", 504)
        return sse_error("The engine broke off the stream; retry the request.", "upstream_stream_broken", 502)

    async def _pass_through(self, send: Send, interrupt: Interrupt,
                            headers: list[tuple[bytes, bytes]]) -> str | None:
        """Send the engine's chunks on until it ends (None) or something cuts the stream (why)."""
        limits = self.gateway.settings.limits
        loop = asyncio.get_running_loop()
        first = True
        try:
            await send({"type": "http.response.start", "status": self.upstream.status_code,
                        "headers": headers})
            async with asyncio.timeout(limits.first_byte_timeout_seconds) as deadline:
                async for chunk in self.upstream.aiter_raw():
                    if first:
                        first = False
                        self.gateway.metrics.ttft.labels(self.route).observe(time.perf_counter() - self.started)
                    deadline.reschedule(None)  # the idle timeout measures the engine, not the client
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    self._count_usage(chunk)
                    deadline.reschedule(loop.time() + limits.idle_timeout_seconds)
        except asyncio.CancelledError:
            reason = interrupt.settle()
            if reason is None:
                raise
            return reason
        except TimeoutError:
            return "timeout"
        except httpx.HTTPError:
            return "upstream"
        return None
