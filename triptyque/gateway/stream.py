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
import logging
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

log = logging.getLogger("triptyque.gateway")


def _nothing() -> None:
    return None


def _content_type(upstream: httpx.Response) -> bytes:
    """The engine's content type, as it sent it when that is printable ASCII."""
    for name, value in upstream.headers.raw:
        if name.lower() == b"content-type":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if text.isprintable():
                return value
            break
    return b"text/event-stream"


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


class ProxyStream:
    def __init__(self, context: StreamContext, request: Request, upstream: httpx.Response, route: str,
                 key: str, started: float, release: Callable[[], None]) -> None:
        self.context, self.request, self.upstream = context, request, upstream
        self.route, self.key, self.started = route, key, started
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Everything from here on is inside the try: the slot is freed and the engine
        # request closed whatever fails, a bad header from the engine included.
        cut: str | None = None
        interrupt: Interrupt | None = None
        forget: Callable[[], None] = _nothing
        gone: asyncio.Future[None] | None = None
        try:
            headers = [
                (b"content-type", _content_type(self.upstream)),
                (b"cache-control", b"no-cache"),
                (b"x-request-id", self.request.state.request_id.encode("latin-1")),
            ]
            interrupt = Interrupt()
            forget = self.context.cut_on_kill(interrupt)
            gone = asyncio.ensure_future(_disconnected(receive))
            fire = interrupt.fire
            gone.add_done_callback(lambda done: None if done.cancelled() or done.exception()
                                   else fire("client_gone"))
            cut = await self._pass_through(send, interrupt, headers)
            interrupt.disarm()
            if cut == "client_gone":
                return
            if cut is not None:
                await send({"type": "http.response.body", "body": self._last_event(cut), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.release()
            if interrupt is not None:
                interrupt.disarm()
            forget()
            if gone is not None:
                gone.cancel()
            with contextlib.suppress(Exception):
                await self.upstream.aclose()
            self._count(cut)

    def _count(self, cut: str | None) -> None:
        metrics = self.context.accounting.metrics
        if cut == "internal":
            metrics.internal_errors.inc()
        if cut is not None and cut != "client_gone":
            metrics.streams_cut.labels(cut).inc()
            if cut not in ("kill_switch", "internal"):
                metrics.upstream_errors.labels(self.route, "timeout" if cut == "timeout" else "protocol").inc()
        self.context.accounting.record(self.request, self.route, self.upstream.status_code, self.key,
                                       self.started)

    def _last_event(self, cut: str) -> bytes:
        if cut == "kill_switch":
            return sse_error(self.context.stopped_message(), "kill_switch_engaged", 503)
        if cut == "internal":
            return sse_error("The gateway failed on this stream; report it with the request id.",
                             "internal_error", 500)
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
        except Exception as exc:  # a bug or an engine answer nobody foresaw: end the stream in JSON
            log.error("stream failed: %s", type(exc).__name__,
                      extra={"event": "internal_error", "request_id": self.request.state.request_id,
                             "route": self.route})
            return "internal"
        return None
