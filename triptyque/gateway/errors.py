"""OpenAI-style JSON errors: every refusal says what happened and what to do."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


def error_body(status: int, message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "error"), "param": None, "code": code}}


def error_response(
    status: int, message: str, code: str, *, request_id: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    merged = {"x-request-id": request_id} if request_id else {}
    return JSONResponse(error_body(status, message, code), status_code=status, headers=merged | (headers or {}))


def sse_error(message: str, code: str, status: int = 503) -> bytes:
    """The last event of a stream the gateway had to cut."""
    return b"data: " + json.dumps(error_body(status, message, code)).encode() + b"\n\ndata: [DONE]\n\n"


class Refusal(Exception):
    """A request the gateway will not serve: the status, the message and the code it answers."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def refusal_response(request: Request, refusal: Refusal) -> JSONResponse:
    """A ``Refusal`` as the JSON answer to ``request``."""
    return error_response(refusal.status, refusal.message, refusal.code,
                          request_id=request.state.request_id, headers=refusal.headers)
