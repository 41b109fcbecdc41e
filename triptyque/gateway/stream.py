"""Pass an engine's server-sent events through as they arrive, and cut them when told.

Each chunk is sent on as soon as the engine writes it (never buffered). The stream
ends early, with a final JSON error event, when the kill switch is engaged, the
engine breaks off, or the engine stays silent past the idle timeout; if the client
goes away the engine request is closed so the engine stops generating.

The stream is handed the few collaborators it needs (accounting, the limits, how to
be cut on a kill, how to free its slot), not the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from triptyque.gateway.accounting import Accounting
from triptyque.gateway.errors import sse_error
from triptyque.gateway.interrupt import Interrupt
from triptyque.spec import Limits


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass(frozen=True)
class StreamContext:
    """What one proxied stream needs from the gateway."""

    accounting: Accounting
    limits: Limits
    cut_on_kill: Callable[[Interrupt], Callable[[], None]]
    stopped_message: Callable[[], str]
    release: Callable[[], None]


class ProxyStream:
    def __init__(self, context: StreamContext, request: Request, upstream: httpx.Response, route: str,
                 key: str, started: float) -> None:
        self.context, self.request, self.upstream = context, request, upstream
        self.route, self.key, self.started = route, key, started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = self.context
        metrics = context.accounting.metrics
        headers = [
            (b"content-type", self.upstream.headers["content-type"].encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self.request.state.request_id.encode("latin-1")),
        ]
        interrupt = Interrupt()
        forget = context.cut_on_kill(interrupt)
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
                metrics.streams_cut.labels(cut).inc()
                if cut != "kill_switch":
                    metrics.upstream_errors.labels(self.route, "timeout" if cut == "timeout"
                                                   else "protocol").inc()
            context.release()
            context.accounting.record(self.request, self.route, self.upstream.status_code, self.key, self.started)

    def _last_event(self, cut: str) -> bytes:
        if cut == "kill_switch":
            return sse_error(self.context.stopped_message(), "kill_switch_engaged", 503)
        if cut == "timeout":
            return sse_error("The engine stopped sending; the stream timed out.", "upstream_timeout", 504)
        return sse_error("The engine broke off the stream; retry the request.", "upstream_stream_broken", 502)

    async def _pass_through(self, send: Send, interrupt: Interrupt,
                            headers: list[tuple[bytes, bytes]]) -> str | None:
        """Send the engine's chunks on until it ends (None) or something cuts the stream (why)."""
        limits = self.context.limits
        accounting = self.context.accounting
        loop = asyncio.get_running_loop()
        first = True
        try:
            await send({"type": "http.response.start", "status": self.upstream.status_code,
                        "headers": headers})
            async with asyncio.timeout(limits.first_byte_timeout_seconds) as deadline:
                async for chunk in self.upstream.aiter_raw():
                    if first:
                        first = False
                        accounting.metrics.ttft.labels(self.route).observe(time.perf_counter() - self.started)
                    deadline.reschedule(None)  # the idle timeout measures the engine, not the client
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    accounting.count_stream_usage(self.key, chunk)
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
