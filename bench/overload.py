"""Overload: ten times the gateway's concurrency limit, against an engine that takes its time.

The fake engine answers after 50 ms, so the gateway's limit (16) is what binds.
First the limit's worth of clients (nothing refused: the reference), then ten times
as many. Two client behaviours: after a 429, wait ``backoff`` (0.1 s: shorter than the
1 s the gateway's Retry-After asks for), or send again at once (hostile: the CPU,
shared by the load generator, the gateway and the engine, is then what binds).
Admitted requests must keep their
p99 within 2x of the reference, refusals must come back promptly, the gateway must
answer nothing 5xx itself, and its memory must stay bounded (sampled every 100 ms,
over two overload rounds so that a leak would show as growth between them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bench.client import Run, build_request, closed_loop
from bench.procs import API_KEY, rss_bytes

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
ENGINE_DELAY = 0.05


@dataclass
class Overload:
    reference: Run
    loaded: list[Run]
    rss_start: int
    rss_peak: int
    rss_after_rounds: list[int] = field(default_factory=list)


async def _sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_bytes(pid))
        await asyncio.sleep(0.1)


async def overload(port: int, gateway_pid: int, limit: int, seconds: float, backoff: float,
                   rounds: int = 2) -> Overload:
    raw = build_request("POST", "/v1/chat/completions", port, CHAT, {"authorization": f"Bearer {API_KEY}"})
    await closed_loop(port, raw, concurrency=limit, requests=limit * 4)
    rss_start = rss_bytes(gateway_pid)
    reference = await closed_loop(port, raw, concurrency=limit, duration=seconds)
    peak, stop = [rss_start], asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(gateway_pid, peak, stop))
    loaded, after = [], []
    for _ in range(rounds):
        loaded.append(await closed_loop(port, raw, concurrency=limit * 10, duration=seconds,
                                        on_refusal=(lambda _sample: backoff) if backoff else None))
        await asyncio.sleep(0.5)
        after.append(rss_bytes(gateway_pid))
    stop.set()
    await sampler
    return Overload(reference, loaded, rss_start, peak[0], after)
