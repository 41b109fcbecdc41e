"""uvicorn's HTTP protocol with a deadline on request headers (slowloris).

uvicorn times out idle keep-alive connections but sets no deadline on a request's
headers: a client that sends one header line every few seconds holds its connection
(and a file descriptor) for as long as it likes. Here a connection gets
``header_timeout`` seconds from its first byte (or from being opened, or from the
end of the previous response) to the end of its request headers; past that it
gets a ``408`` JSON error and is closed. The request body has its own deadline in
the app (``body_timeout``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("triptyque.gateway")


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps({"error": {
        "message": f"The request headers did not arrive within {seconds:g} s.",
        "type": "invalid_request_error", "param": None, "code": "header_timeout",
    }}).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body))
    return head + body


def _base_protocol() -> type[asyncio.Protocol]:
    """The protocol uvicorn's ``http="auto"`` would pick: httptools if installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def header_deadline_protocol(header_timeout: float,
                             base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """A subclass of ``base`` (default: uvicorn's auto choice) enforcing ``header_timeout``."""
    parent: Any = base or _base_protocol()
    answer = _timeout_response(header_timeout)

    class HeaderDeadline(parent):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _armed_for: object = None  # the request cycle in progress when the timer was armed

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first byte of a new request on a kept-alive connection
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._armed_for:
                self._disarm()  # the parser built a new request cycle: its headers are complete

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._armed_for = self.cycle
            self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self.cycle is not self._armed_for:
                return
            client = self.client or ("-", 0)
            log.warning("request headers timed out", extra={
                "event": "header_timeout", "client": f"{client[0]}:{client[1]}",
                "timeout_seconds": header_timeout})
            self.transport.write(answer)
            self.transport.close()

    HeaderDeadline.__name__ = HeaderDeadline.__qualname__ = f"HeaderDeadline{parent.__name__}"
    return HeaderDeadline
