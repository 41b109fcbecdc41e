"""A small HTTP/1.1 load client on raw asyncio: keep-alive connections, prebuilt requests.

It spends as little CPU per request as Python allows (no URL parsing, no header
objects), because on a two-core machine the client shares the CPU with what it
measures. Each sample records the status, the latency to the last byte and, for a
streamed answer, the time to the first body chunk (the first token event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    status: int
    latency: float
    ttft: float | None = None
    body: bytes = b""


def build_request(method: str, path: str, port: int, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> bytes:
    content = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(content)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


class Connection:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, raw: bytes, keep_body: bool = False) -> Sample:
        started = time.perf_counter()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        body = bytearray()
        ttft = None
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunk = await self.reader.readexactly(size + 2)
                if ttft is None:
                    ttft = time.perf_counter() - started
                if keep_body:
                    body += chunk[:-2]
        else:
            marker = lower.find(b"content-length:")
            if marker >= 0:
                length = int(lower[marker + 15:lower.index(b"\r\n", marker)])
                data = await self.reader.readexactly(length)
                if keep_body:
                    body += data
        if b"connection: close" in lower:
            await self.close()
        return Sample(status, time.perf_counter() - started, ttft, bytes(body))


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def by_status(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for s in self.samples:
            counts[s.status] = counts.get(s.status, 0) + 1
        return counts

    def latencies(self, status: int = 200) -> list[float]:
        return [s.latency for s in self.samples if s.status == status]

    def ttfts(self) -> list[float]:
        return [s.ttft for s in self.samples if s.status == 200 and s.ttft is not None]

    def throughput(self, status: int = 200) -> float:
        return len(self.latencies(status)) / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def closed_loop(port: int, raw: bytes, *, concurrency: int, duration: float | None = None,
                      requests: int | None = None, warmup: int = 0,
                      on_refusal: Callable[[Sample], float] | None = None) -> Run:
    """``concurrency`` workers, each on its own connection, sending until the deadline or count.

    ``on_refusal`` returns how long a worker waits after a non-200 answer (0 by default).
    """
    run = Run()
    remaining = [requests if requests is not None else 1 << 62]
    connections = [Connection(port) for _ in range(concurrency)]
    for conn in connections[:warmup]:
        await conn.send(raw)
    deadline = time.perf_counter() + duration if duration else float("inf")

    async def worker(conn: Connection) -> None:
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            try:
                sample = await conn.send(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                await conn.close()
                continue
            run.samples.append(sample)
            if sample.status != 200 and on_refusal is not None:
                await asyncio.sleep(on_refusal(sample))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        run.seconds = time.perf_counter() - started
        for conn in connections:
            await conn.close()
    return run
