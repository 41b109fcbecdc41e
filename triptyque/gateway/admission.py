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


class Slot:
    """One admitted request's place under the concurrency limit; ``release`` frees it once."""

    __slots__ = ("_slots",)

    def __init__(self, slots: Slots) -> None:
        self._slots: Slots | None = slots

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.in_flight -= 1
            slots.metrics.in_flight.set(slots.in_flight)


class Slots:
    """The concurrency limit: a ``Slot`` per admitted request, released exactly once."""

    def __init__(self, limit: int, metrics: GatewayMetrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self.metrics = metrics

    def take(self) -> Slot:
        if self.in_flight >= self.limit:
            raise Refusal(429, f"Too many concurrent requests (limit {self.limit}); retry shortly.",
                          "concurrency_limit", {"retry-after": "1"})
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        return Slot(self)


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
    depth = settings.limits.max_json_depth
    too_deep = Refusal(400, f"Request body nests JSON deeper than {depth} levels.", "json_too_deep")
    try:
        # JSON over HTTP is UTF-8 (RFC 8259); json.loads(bytes) would guess UTF-16 or 32
        # from NUL bytes and call a valid UTF-8 body badly encoded.
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refusal(400, "Request body is not valid UTF-8.", "invalid_encoding") from None
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise Refusal(400, f"Request body is not valid JSON: {exc}.", "invalid_json") from None
    if not isinstance(body, dict):
        raise Refusal(400, "Request body must be a JSON object.", "invalid_json")
    if raw.count(b"{") + raw.count(b"[") > depth and nesting(body, depth) > depth:
        raise too_deep
    return raw, body


def nesting(value: Any, limit: int) -> int:
    """How deep ``value`` nests objects and arrays, counted up to ``limit + 1`` (no recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        pending.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
