"""Accounting: every answer counted in the metrics and logged, tokens counted per key.

Answers are labelled with the key's *name*, never the key.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.requests import Request

from triptyque.gateway.metrics import GatewayMetrics
from triptyque.gateway.settings import GatewaySettings

log = logging.getLogger("triptyque.gateway")


class Accounting:
    def __init__(self, settings: GatewaySettings) -> None:
        self.metrics = GatewayMetrics(settings)

    def record(self, request: Request, route: str, status: int, key: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(route, str(status), key).inc()
        self.metrics.duration.labels(route).observe(elapsed)
        log.info("request", extra={
            "event": "request", "request_id": request.state.request_id, "route": route,
            "method": request.method, "status": status, "key": key,
            "duration_ms": round(elapsed * 1000, 3),
        })

    def count_usage(self, key: str, body: bytes) -> None:
        try:
            usage = json.loads(body).get("usage") or {}
        except (ValueError, AttributeError, RecursionError):
            return
        if not isinstance(usage, dict):
            return
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens")
            if isinstance(value, int) and value > 0:
                self.metrics.tokens.labels(key, kind).inc(value)

    def count_stream_usage(self, key: str, chunk: bytes) -> None:
        """Usage in a server-sent event (the last one, with ``stream_options.include_usage``)."""
        if b'"usage":{' not in chunk and b'"usage": {' not in chunk:
            return
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: {") and b'"usage"' in line:
                self.count_usage(key, line[6:])
