"""uvicorn's HTTP protocol with a deadline and a size limit on request headers.

uvicorn times out idle keep-alive connections but sets no deadline on a request's
headers: a client that sends one header line every few seconds holds its connection
(and a file descriptor) for as long as it likes. Here a connection gets
``header_timeout`` seconds from its first byte (or from being opened, or from the
end of the previous response) to the end of its request headers; past that it
gets a ``408`` JSON error and is closed. The request body has its own deadline in
the app (``body_timeout``).

Nor does uvicorn (with httptools) bound their size: the parser gathers a header value
or a URL for as long as it grows. Here the bytes of a request's head are counted as
they arrive, before the parser sees them: a request target over ``max_url_bytes`` gets
``414``, a head over ``max_header_bytes`` ``431``, and the connection is closed; at most
one read (256 KiB) is ever held. The warning for each connection cut is rate-limited:
one line, then a count every ``WARN_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("triptyque.gateway")


WARN_EVERY = 10.0
LINGER_SECONDS = 1.0  # after refusing a head: how long its remaining bytes are read and dropped
_READ_MARGIN = 32  # method, spaces and HTTP version around the request target


def _error_response(status: int, reason: str, message: str, code: str) -> bytes:
    body = json.dumps({"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": code,
    }}).encode()
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % (status, reason.encode(), len(body)))
    return head + body


def _timeout_response(seconds: float) -> bytes:
    return _error_response(408, "Request Timeout",
                           f"The request headers did not arrive within {seconds:g} s.", "header_timeout")


class RateLimitedWarning:
    """A warning logged at most once per ``every`` seconds; the lines held back are counted."""

    def __init__(self, message: str, event: str, every: float = WARN_EVERY) -> None:
        self.message, self.event, self.every = message, event, every
        self._next = 0.0
        self._held = 0

    def __call__(self, now: float, **extra: object) -> None:
        if now < self._next:
            self._held += 1
            return
        log.warning(self.message, extra={"event": self.event, "suppressed": self._held, **extra})
        self._held, self._next = 0, now + self.every


def _base_protocol() -> type[asyncio.Protocol]:
    """The protocol uvicorn's ``http="auto"`` would pick: httptools if installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def header_deadline_protocol(header_timeout: float, base: type[asyncio.Protocol] | None = None, *,
                             max_header_bytes: int = 32 * 1024,
                             max_url_bytes: int = 8 * 1024) -> type[asyncio.Protocol]:
    """A subclass of ``base`` (default: uvicorn's auto choice) enforcing ``header_timeout`` and
    the size limits on a request's head."""
    parent: Any = base or _base_protocol()
    answer = _timeout_response(header_timeout)
    too_large = _error_response(431, "Request Header Fields Too Large",
                                f"The request headers exceed {max_header_bytes} bytes in all.", "headers_too_large")
    too_long = _error_response(414, "URI Too Long",
                               f"The request URL exceeds {max_url_bytes} bytes.", "url_too_long")
    timed_out = RateLimitedWarning("request headers timed out", "header_timeout")
    oversized = RateLimitedWarning("request head too large", "header_too_large")

    class HeaderDeadline(parent):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _armed_for: object = None  # the request cycle in progress when the timer was armed
        _head_open = True  # the next bytes belong to a request's head
        _head_bytes = 0
        _line = b""  # the request line so far, kept up to the URL limit
        _line_done = False
        _tail = b""  # the last bytes of the head so far, to find its end across reads
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first byte of a new request on a kept-alive connection
            if self._head_open and not self._within_limits(data):
                return
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._armed_for:
                self._disarm()  # the parser built a new request cycle: its headers are complete

        def on_headers_complete(self) -> None:  # httptools: the head is over
            self._head_open = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:  # httptools: what follows is the next head
            super().on_message_complete()
            self._open_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _open_head(self) -> None:
            self._head_open, self._head_bytes, self._line, self._line_done, self._tail = True, 0, b"", False, b""

        def _within_limits(self, data: bytes) -> bool:
            """Count ``data`` into the head (up to its end); refuse and close past a limit."""
            joined = self._tail + data
            end = joined.find(b"\r\n\r\n")
            part = data if end < 0 else data[:max(0, end + 4 - len(self._tail))]
            self._head_bytes += len(part)
            if not self._line_done:
                line, newline, _ = part.partition(b"\n")
                self._line += line[:max_url_bytes + _READ_MARGIN + 1 - len(self._line)]
                self._line_done = bool(newline)
                target = self._line.split(b" ")[1] if self._line.count(b" ") >= 2 else self._line
                if len(target) > max_url_bytes or len(self._line) > max_url_bytes + _READ_MARGIN:
                    self._refuse(too_long, "url")
                    return False
            if self._head_bytes > max_header_bytes:
                self._refuse(too_large, "headers")
                return False
            if end >= 0:
                self._head_open = False
            else:
                self._tail = joined[-3:]
            return True

        def _refuse(self, response: bytes, what: str) -> None:
            self._refused = True
            self._disarm()
            client = self.client or ("-", 0)
            oversized(self.loop.time(), client=f"{client[0]}:{client[1]}", limit=what)
            self.transport.write(response)
            # Half-close and drop what still comes for a moment, then close: closing with unread
            # bytes would reset the connection and the client could lose the answer.
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(LINGER_SECONDS, self.transport.close)
            else:
                self.transport.close()

        def _arm(self) -> None:
            self._armed_for = self.cycle
            self._open_head()
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
            timed_out(self.loop.time(), client=f"{client[0]}:{client[1]}", timeout_seconds=header_timeout)
            self.transport.write(answer)
            self.transport.close()

    HeaderDeadline.__name__ = HeaderDeadline.__qualname__ = f"HeaderDeadline{parent.__name__}"
    return HeaderDeadline
