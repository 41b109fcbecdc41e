"""Admission: who may call (API and admin keys), how many at once, and what body is accepted.

Every refusal is a ``Refusal`` that the routes turn into an OpenAI-style JSON error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request

from triptyque.gateway.errors import Refusal
from triptyque.gateway.metrics import GatewayMetrics
from triptyque.gateway.settings import GatewaySettings
from triptyque.keys import match_key


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: Request, hashes: dict[str, str], what: str) -> str:
    """The name of the key the request carries; Refusal 401 when there is none that fits."""
    token = _bearer(request)
    if token is None:
        raise Refusal(401, f"Missing {what} key: send 'Authorization: Bearer <key>'.", "missing_api_key")
    name = match_key(token, hashes)
    if name is None:
        raise Refusal(401, f"Invalid {what} key.", "invalid_api_key")
    return name


class Slots:
    """The concurrency limit: a slot per admitted request, released exactly once."""

    def __init__(self, limit: int, metrics: GatewayMetrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self._metrics = metrics

    def take(self) -> None:
        if self.in_flight >= self.limit:
            raise Refusal(429, f"Too many concurrent requests (limit {self.limit}); retry shortly.",
                          "concurrency_limit", {"retry-after": "1"})
        self.in_flight += 1
        self._metrics.in_flight.set(self.in_flight)

    def release(self) -> None:
        self.in_flight -= 1
        self._metrics.in_flight.set(self.in_flight)


async def read_json(request: Request, settings: GatewaySettings) -> tuple[bytes, dict[str, Any]]:
    """The body as bytes and as a JSON object, within the size and time limits."""
    limit = settings.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, f"Request body of {declared} bytes exceeds the {limit}-byte limit.",
                      "body_too_large")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise Refusal(415, "Send the body as JSON with 'Content-Type: application/json'.",
                      "unsupported_media_type")
    chunks, size = [], 0
    wait = settings.limits.idle_timeout_seconds
    try:
        # A client trickling its body must not hold a concurrency slot for ever.
        async with asyncio.timeout(wait):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, f"Request body exceeds the {limit}-byte limit.", "body_too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal(408, f"The request body did not arrive within {wait:g} s.", "body_timeout") from None
    raw = b"".join(chunks)
    try:
        # JSON over HTTP is UTF-8 (RFC 8259); json.loads(bytes) would guess UTF-16 or 32
        # from NUL bytes and call a valid UTF-8 body badly encoded.
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refusal(400, "Request body is not valid UTF-8.", "invalid_encoding") from None
    except ValueError as exc:
        raise Refusal(400, f"Request body is not valid JSON: {exc}.", "invalid_json") from None
    if not isinstance(body, dict):
        raise Refusal(400, "Request body must be a JSON object.", "invalid_json")
    return raw, body
