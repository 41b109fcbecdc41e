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
        gateway, limits = self.gateway, self.gateway.settings.limits
        headers = [
            (b"content-type", self.upstream.headers["content-type"].encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self.request.state.request_id.encode("latin-1")),
        ]
        chunks = self.upstream.aiter_raw()
        stop = asyncio.ensure_future(gateway.killswitch.wait_engaged())
        gone = asyncio.ensure_future(_disconnected(receive))
        pending: asyncio.Future[bytes] | None = None
        cut: str | None = None
        try:
            await send({"type": "http.response.start", "status": self.upstream.status_code,
                        "headers": headers})
            first = True
            while True:
                pending = asyncio.ensure_future(anext(chunks))
                timeout = limits.first_byte_timeout_seconds if first else limits.idle_timeout_seconds
                done, _ = await asyncio.wait({pending, stop, gone}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if pending in done:
                    try:
                        chunk = pending.result()
                    except StopAsyncIteration:
                        break
                    except httpx.HTTPError:
                        cut = "upstream"
                        await send({"type": "http.response.body", "more_body": True, "body": sse_error(
                            "The engine broke off the stream; retry the request.", "upstream_stream_broken",
                            502)})
                        break
                    if first:
                        first = False
                        gateway.metrics.ttft.labels(self.route).observe(time.perf_counter() - self.started)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    self._count_usage(chunk)
                    continue
                if gone in done:
                    return
                if stop in done:
                    cut = "kill_switch"
                    tail = sse_error(gateway.stopped_message(), "kill_switch_engaged", 503)
                else:
                    cut = "timeout"
                    tail = sse_error("The engine stopped sending; the stream timed out.",
                                     "upstream_timeout", 504)
                await send({"type": "http.response.body", "body": tail, "more_body": True})
                break
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            for future in (pending, stop, gone):
                if future is not None and not future.done():
                    future.cancel()
            with contextlib.suppress(Exception):
                await self.upstream.aclose()
            if cut is not None:
                gateway.metrics.streams_cut.labels(cut).inc()
                if cut != "kill_switch":
                    gateway.metrics.upstream_errors.labels(self.route, "timeout" if cut == "timeout"
                                                           else "protocol").inc()
            gateway.release()
            gateway.record(self.request, self.route, self.upstream.status_code, self.key, self.started)

