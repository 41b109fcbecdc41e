"""Gateway overhead: the same load sent to the engine directly and through the gateway.

Drift on a shared machine (and the CPU engine's own swings) must hit both sides
alike, so the single-client workloads interleave the sides request by request
(direct, gateway, gateway, direct, ...: each side goes first half the time) and
the throughput windows alternate sides, order rotated each round. Each metric is
pooled (latencies) or the median of the rounds (throughput). Workloads, all
``/v1/chat/completions`` with 16 tokens:

- latency: one client, one request at a time, JSON answer: median and p99 added;
- TTFT: one client, streamed answer: median time to the first token event;
- throughput: as many clients as the gateway admits (16), JSON answers; and the CPU
  time the gateway process spent per request meanwhile (from /proc: robust to other
  load on the machine, unlike the rates).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from bench.client import Connection, Run, build_request, closed_loop, median, percentile
from bench.procs import API_KEY, cpu_seconds
from bench.report import Row

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Say something"}], "max_tokens": 16}


@dataclass
class Side:
    label: str
    port: int
    pid: int | None = None  # the gateway's, to charge it the CPU it spends per request
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    stream_latencies: list[float] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    stream_throughputs: list[float] = field(default_factory=list)
    failures: int = 0
    cpu_per_request: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Load:
    rounds: int
    latency_requests: int
    throughput_seconds: float
    concurrency: int = 16


async def interleaved(sides: list[Side], requests: dict[str, bytes], count: int) -> dict[str, Run]:
    """One client per side, one request at a time, alternating sides request by request."""
    connections = {side.label: Connection(side.port) for side in sides}
    runs = {side.label: Run() for side in sides}
    try:
        for side in sides:  # warm up: connection opened, first request paid
            await connections[side.label].send(requests[side.label])
        for number in range(count):
            shift = number % len(sides)
            for side in sides[shift:] + sides[:shift]:
                try:
                    runs[side.label].samples.append(await connections[side.label].send(requests[side.label]))
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    runs[side.label].errors += 1
                    await connections[side.label].close()
    finally:
        for conn in connections.values():
            await conn.close()
    return runs


async def measure(sides: list[Side], load: Load) -> None:
    headers = {"authorization": f"Bearer {API_KEY}"}
    plain = {s.label: build_request("POST", "/v1/chat/completions", s.port, CHAT, headers) for s in sides}
    streamed = {s.label: build_request("POST", "/v1/chat/completions", s.port, CHAT | {"stream": True},
                                       headers) for s in sides}
    for round_number in range(load.rounds):
        ones = await interleaved(sides, plain, load.latency_requests)
        ttfts = await interleaved(sides, streamed, load.latency_requests)
        for side in sides:
            one, ttft = ones[side.label], ttfts[side.label]
            side.latencies += one.latencies()
            side.ttfts += ttft.ttfts()
            side.stream_latencies += ttft.latencies()
            side.failures += sum(n for status, n in (one.by_status() | ttft.by_status()).items() if status != 200)
            side.failures += one.errors + ttft.errors
        shift = round_number % len(sides)
        for side in sides[shift:] + sides[:shift]:
            cpu_before = cpu_seconds(side.pid) if side.pid else 0.0
            many = await closed_loop(side.port, plain[side.label], concurrency=load.concurrency,
                                     duration=load.throughput_seconds, warmup=load.concurrency)
            if side.pid and many.samples:
                side.cpu_per_request.append((cpu_seconds(side.pid) - cpu_before) / len(many.samples))
            side.throughputs.append(many.throughput())
            many_streams = await closed_loop(side.port, streamed[side.label], concurrency=load.concurrency,
                                             duration=load.throughput_seconds, warmup=load.concurrency)
            side.stream_throughputs.append(many_streams.throughput())
            side.failures += sum(n for status, n in (many.by_status() | many_streams.by_status()).items()
                                 if status != 200)
            side.failures += many.errors + many_streams.errors


def rows(engine: str, direct: Side, gateway: Side, *, gateway_bound: bool) -> list[Row]:
    """The table rows for one engine; ratio targets apply only where the engine is the bottleneck."""
    ms = 1000.0
    d50, g50 = median(direct.latencies) * ms, median(gateway.latencies) * ms
    d99, g99 = percentile(direct.latencies, 99) * ms, percentile(gateway.latencies, 99) * ms
    dt, gt = median(direct.ttfts) * ms, median(gateway.ttfts) * ms
    drps, grps = median(direct.throughputs), median(gateway.throughputs)
    dsrps, gsrps = median(direct.stream_throughputs), median(gateway.stream_throughputs)
    label = f"{engine}, {gateway.label}"
    where = "gateway-bound, reported" if gateway_bound else None
    out = [
        Row(label, "median latency, 1 client", d50, g50, "ms", g50 / d50,
            f"added {g50 - d50:+.3f} ms < 1 ms", g50 - d50 < 1.0),
        Row(label, "p99 latency, 1 client", d99, g99, "ms", g99 / d99,
            f"added {g99 - d99:+.3f} ms < 5 ms", g99 - d99 < 5.0),
        Row(label, "median TTFT, 1 client, stream", dt, gt, "ms", gt / dt,
            where or "ratio <= 1.02", None if gateway_bound else gt / dt <= 1.02),
        Row(label, "throughput, 16 clients", drps, grps, "rps", grps / drps,
            where or "ratio >= 0.90", None if gateway_bound else grps / drps >= 0.90),
        Row(label, "throughput, 16 clients, stream", dsrps, gsrps, "rps", gsrps / dsrps,
            where or "ratio >= 0.90", None if gateway_bound else gsrps / dsrps >= 0.90),
    ]
    if gateway.cpu_per_request:
        cpu = median(gateway.cpu_per_request) * ms
        out.append(Row(label, "gateway CPU per request, 16 clients", float("nan"), cpu, "ms", None,
                       "reported", None))
    if direct.failures or gateway.failures:
        out.append(Row(label, "non-200 answers or errors", direct.failures, gateway.failures, "", None,
                       "0", direct.failures == gateway.failures == 0))
    return [r for r in out if not (math.isnan(r.reference) and math.isnan(r.measured))]
