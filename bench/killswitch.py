"""Kill switch timing: from the kill command to the first refused request and the last stream cut.

Each gateway serves open streams (the fake engine sends a token every 10 ms, for
minutes) and a prober sends requests back to back. The kill goes out the way
``triptyque kill`` sends it (``targets.base.admin_fleet``: every gateway at once);
the clock starts just before that call. For each gateway: when the first 503 came
back, and when the last open stream received its final ``kill_switch_engaged``
event. A fleet's numbers are the worst gateway's. Each cycle ends with a resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from bench.client import Connection, build_request
from bench.procs import ADMIN_KEY, API_KEY
from triptyque.targets.base import Endpoint, admin_fleet

STREAM = {"model": "tiny-llama", "messages": [{"role": "user", "content": "go on"}],
          "max_tokens": 100_000, "stream": True}
PROBE = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@dataclass
class Cycle:
    first_refused: list[float] = field(default_factory=list)  # per gateway, seconds after the command
    last_cut: list[float] = field(default_factory=list)
    acknowledged: list[float] = field(default_factory=list)
    uncut: int = 0


async def _open_stream(port: int, started: asyncio.Event, cut_at: list[float]) -> None:
    raw = build_request("POST", "/v1/chat/completions", port, STREAM,
                        {"authorization": f"Bearer {API_KEY}", "x-fake-token-interval": "0.01"})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await reader.readuntil(b"\r\n\r\n")
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            started.set()
            if b"kill_switch_engaged" in chunk:
                cut_at.append(time.perf_counter())
                return
    finally:
        writer.close()


async def _probe(port: int, refused_at: list[float], stop: asyncio.Event) -> None:
    raw = build_request("POST", "/v1/chat/completions", port, PROBE, {"authorization": f"Bearer {API_KEY}"})
    conn = Connection(port)
    try:
        while not stop.is_set():
            sample = await conn.send(raw)
            if sample.status == 503:
                refused_at.append(time.perf_counter())
                return
    finally:
        await conn.close()


async def cycle(ports: list[int], streams: int) -> Cycle:
    endpoints = [Endpoint(f"gateway-{port}", f"http://127.0.0.1:{port}") for port in ports]
    cuts: dict[int, list[float]] = {port: [] for port in ports}
    refused: dict[int, list[float]] = {port: [] for port in ports}
    begun = {port: [asyncio.Event() for _ in range(streams)] for port in ports}
    stop = asyncio.Event()
    stream_tasks = [asyncio.create_task(_open_stream(port, event, cuts[port]))
                    for port in ports for event in begun[port]]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for es in begun.values() for e in es)), 20)
    probes = [asyncio.create_task(_probe(port, refused[port], stop)) for port in ports for _ in range(2)]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    reports = await admin_fleet(endpoints, ADMIN_KEY, "kill", "bench", "kill-switch timing")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*stream_tasks, return_exceptions=True), 5)
    stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*probes, return_exceptions=True), 5)
    for task in stream_tasks + probes:
        task.cancel()
    result = Cycle(acknowledged=[r.seconds for r in reports])
    for port in ports:
        result.uncut += streams - len(cuts[port])
        result.first_refused.append(min(refused[port], default=float("inf")) - started)
        result.last_cut.append(max(cuts[port], default=float("inf")) - started)
    resumed = await admin_fleet(endpoints, ADMIN_KEY, "resume", "bench", "kill-switch timing done")
    assert all(r.reachable and r.engaged is False for r in resumed), resumed
    return result
