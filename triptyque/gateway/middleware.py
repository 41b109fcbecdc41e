"""The request-id middleware: an id for every request, and any failure answered in JSON."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from triptyque.gateway.errors import error_response
from triptyque.gateway.metrics import GatewayMetrics

log = logging.getLogger("triptyque.gateway")


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
