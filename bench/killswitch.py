"""Kill switch timing: from the kill command to the first refused request and the last stream cut.

Each gateway serves open streams and a prober sends requests back to back. The
kill goes out the way ``triptyque kill`` sends it (``targets.base.admin_fleet``:
every gateway at once); the clock starts just before that call. For each gateway:
when the first 503 came back, and when the last open stream received its final
``kill_switch_engaged`` event. A fleet's numbers are the worst gateway's. Each
cycle ends with a resume.

A stream that ends by itself before the kill is opened again (real engines finish
their answers; the fake engine streams for minutes). A stream request sent before
the kill and still waiting for its first bytes is in flight too: its ``503
kill_switch_engaged`` answer counts as its cut. A stream that ends by itself *after*
the gateway acknowledged the kill was not cut: it is counted as ``uncut`` and fails
the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.client import Connection, build_request
from bench.procs import ADMIN_KEY, API_KEY
from bench.report import Row
from triptyque.targets.base import admin_fleet
from triptyque.types import Endpoint

MARKER = b"kill_switch_engaged"
FAKE_STREAM: dict[str, Any] = {"model": "tiny-llama", "messages": [{"role": "user", "content": "go on"}],
                               "max_tokens": 100_000, "stream": True}
PROBE: dict[str, Any] = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}],
                         "max_tokens": 4}


@dataclass(frozen=True)
class Gateway:
    """One gateway to time: where it listens, the API key, and the stream it is asked for."""

    name: str
    host: str
    port: int
    api_key: str = API_KEY
    stream: dict[str, Any] = field(default_factory=lambda: FAKE_STREAM)
    stream_headers: dict[str, str] = field(default_factory=lambda: {"x-fake-token-interval": "0.01"})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stream_request(self) -> bytes:
        headers = {"authorization": f"Bearer {self.api_key}", "connection": "close", **self.stream_headers}
        return build_request("POST", "/v1/chat/completions", self.port, self.stream, headers)

    def probe_request(self) -> bytes:
        return build_request("POST", "/v1/chat/completions", self.port, PROBE,
                             {"authorization": f"Bearer {self.api_key}"})


def loopback(port: int) -> Gateway:
    return Gateway(f"gateway-{port}", "127.0.0.1", port)


@dataclass
class Cycle:
    first_refused: list[float] = field(default_factory=list)  # per gateway, seconds after the command
    last_cut: list[float] = field(default_factory=list)  # NaN: no stream was in flight there
    acknowledged: list[float] = field(default_factory=list)
    uncut: int = 0


@dataclass
class _Clock:
    sent_at: float = float("inf")  # when the kill command went out
    acknowledged_at: float = float("inf")  # when the last gateway answered it
    uncut: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # stream opens answered otherwise, by status


async def _stream(gateway: Gateway, started: asyncio.Event, cut_at: list[float], clock: _Clock) -> None:
    """Keep one stream open on ``gateway`` until the kill cuts it (or refuses to open it).

    Streams start and restart after a random pause, so that an engine that batches them
    does not end them all at once and leave nothing in flight at the kill."""
    raw = gateway.stream_request()
    while True:
        await asyncio.sleep(random.uniform(0, 0.2))
        reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
        try:
            asked = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                body = await reader.read(65536)
                if head[9:12] == b"503" and MARKER in body and clock.sent_at < float("inf"):
                    if asked < clock.sent_at:
                        cut_at.append(time.perf_counter())  # in flight at the kill, answered 503
                    return  # else refused: the kill was already in force when this stream asked
                status = head[9:12].decode()
                clock.refusals[status] = clock.refusals.get(status, 0) + 1
                continue  # 429 while the previous cycle's streams drain, say: ask again
            tail = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                started.set()
                if MARKER in tail + chunk:
                    cut_at.append(time.perf_counter())
                    return
                tail = chunk[-len(MARKER):]
            if time.perf_counter() > clock.acknowledged_at:
                clock.uncut += 1  # ended by itself after the gateway said it was killed
                return
        finally:
            writer.close()


async def _probe(gateway: Gateway, refused_at: list[float], stop: asyncio.Event) -> None:
    raw = gateway.probe_request()
    conn = Connection(gateway.port, gateway.host)
    try:
        while not stop.is_set():
            sample = await conn.send(raw)
            if sample.status == 503:
                refused_at.append(time.perf_counter())
                return
    finally:
        await conn.close()


async def cycle(gateways: list[Gateway], streams: int, admin_key: str = ADMIN_KEY) -> Cycle:
    endpoints = [Endpoint(g.name, g.url) for g in gateways]
    cuts: dict[str, list[float]] = {g.name: [] for g in gateways}
    refused: dict[str, list[float]] = {g.name: [] for g in gateways}
    begun = {g.name: [asyncio.Event() for _ in range(streams)] for g in gateways}
    clock, stop = _Clock(), asyncio.Event()
    stream_tasks = [asyncio.create_task(_stream(g, event, cuts[g.name], clock))
                    for g in gateways for event in begun[g.name]]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for es in begun.values() for e in es)), 30)
    except TimeoutError:
        for task in stream_tasks:
            task.cancel()
        raise RuntimeError(f"streams did not start within 30 s; other answers: {clock.refusals}") from None
    probes = [asyncio.create_task(_probe(g, refused[g.name], stop)) for g in gateways for _ in range(2)]
    await asyncio.sleep(0.2)
    started = clock.sent_at = time.perf_counter()
    reports = await admin_fleet(endpoints, admin_key, "kill", "bench", "kill-switch timing")
    clock.acknowledged_at = time.perf_counter()
    assert all(r.reachable and r.engaged for r in reports), reports
    await asyncio.wait(stream_tasks, timeout=5)  # unlike wait_for, leaves the stragglers running
    stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*probes, return_exceptions=True), 5)
    still_open = sum(1 for task in stream_tasks if not task.done())  # never cut within 5 s
    for task in stream_tasks + probes:
        task.cancel()
    result = Cycle(acknowledged=[r.seconds for r in reports], uncut=clock.uncut + still_open)
    for g in gateways:
        result.first_refused.append(min(refused[g.name], default=float("inf")) - started)
        result.last_cut.append(max(cuts[g.name], default=math.nan) - started)
    resumed = await admin_fleet(endpoints, admin_key, "resume", "bench", "kill-switch timing done")
    assert all(r.reachable and r.engaged is False for r in resumed), resumed
    return result


def rows(label: str, runs: list[Cycle], limit: float) -> list[Row]:
    """The table rows for ``runs`` of one gateway set, against a ``limit`` in seconds."""
    refused = [max(c.first_refused) * 1000 for c in runs]
    # A cycle where no stream happened to be in flight on some gateway has nothing to time there.
    cut = [max(t for t in c.last_cut if not math.isnan(t)) * 1000 for c in runs
           if any(not math.isnan(t) for t in c.last_cut)]
    uncut = sum(c.uncut for c in runs)
    acked = [max(c.acknowledged) * 1000 for c in runs]
    target = f"< {limit * 1000:.0f} ms (worst of {len(runs)})"
    nan = float("nan")
    cut_ok = bool(cut) and max(cut) < limit * 1000 and uncut == 0
    return [
        Row(label, "to first refused request, median", nan, statistics.median(refused), "ms", None, target,
            max(refused) < limit * 1000),
        Row(label, "to first refused request, worst", nan, max(refused), "ms", None, target,
            max(refused) < limit * 1000),
        Row(label, "to last in-flight stream cut, median", nan, statistics.median(cut) if cut else nan, "ms",
            None, target, cut_ok),
        Row(label, f"to last in-flight stream cut, worst ({len(cut)} cycles with streams in flight)", nan,
            max(cut, default=nan), "ms", None, target, cut_ok),
        Row(label, "streams not cut", nan, uncut, "", None, "0", uncut == 0),
        Row(label, "POST /admin/kill round trip (persisted), worst", nan, max(acked), "ms", None,
            "reported", None),
    ]
