"""What a client sees, measured through the gateways: first token, refusal, service again.

Every function takes the gateways of a target and a clock (seconds since a drill
started) and returns the time each gateway reached the state asked for.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from triptyque.burden.errors import BurdenError
from triptyque.types import Access

Clock = Callable[[], float]


def one_request(http: httpx.Client, url: str, client: Access) -> int:
    """Status of one short chat request; 0 when the gateway cannot be reached."""
    try:
        return http.post(f"{url}/v1/chat/completions", json=client.body(), headers=client.headers()).status_code
    except httpx.HTTPError:
        return 0


def first_token(client: Access, clock: Clock, timeout: float = 120.0) -> dict[str, float]:
    """For each gateway, the clock time at which the first streamed token arrived."""
    seen: dict[str, float] = {}
    with httpx.Client(timeout=timeout) as http:
        for gateway in client.gateways:
            with http.stream("POST", f"{gateway.url}/v1/chat/completions", headers=client.headers(),
                             json=client.body(max_tokens=4, stream=True)) as response:
                if response.status_code != 200:
                    raise BurdenError([f"{gateway.name}: first-token request answered HTTP {response.status_code}"])
                for line in response.iter_lines():
                    if _carries_token(line):
                        seen[gateway.name] = clock()
                        break
            if gateway.name not in seen:
                raise BurdenError([f"{gateway.name}: the stream ended without a token"])
    return seen


def _carries_token(line: str) -> bool:
    if not line.startswith("data: ") or line == "data: [DONE]":
        return False
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        choice = json.loads(line.removeprefix("data: "))["choices"][0]
        return bool((choice.get("delta") or {}).get("content") or choice.get("text"))
    return False


def wait_for_status(client: Access, clock: Clock, wanted: Callable[[int], bool], what: str,
                    timeout: float, interval: float = 0.05) -> dict[str, float]:
    """Poll every gateway with real requests until ``wanted(status)``; the clock time for each."""
    reached: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as http:
        while len(reached) < len(client.gateways):
            for gateway in client.gateways:
                if gateway.name not in reached and wanted(one_request(http, gateway.url, client)):
                    reached[gateway.name] = clock()
            if len(reached) == len(client.gateways):
                break
            if time.monotonic() > deadline:
                missing = ", ".join(g.name for g in client.gateways if g.name not in reached)
                raise BurdenError([f"{missing}: not {what} after {timeout:.0f} s"])
            time.sleep(interval)
    return reached


def wait_refused(client: Access, clock: Clock, timeout: float = 30.0) -> dict[str, float]:
    return wait_for_status(client, clock, lambda s: s == 503, "refusing (503)", timeout)


def wait_serving(client: Access, clock: Clock, timeout: float = 600.0) -> dict[str, float]:
    return wait_for_status(client, clock, lambda s: s == 200, "serving (200)", timeout, interval=0.25)


def wait_not_ready(client: Access, clock: Clock, timeout: float = 60.0) -> dict[str, float]:
    """Until each gateway's /readyz stops answering 200: the gateway has noticed the failure."""
    reached: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as http:
        while len(reached) < len(client.gateways):
            for gateway in client.gateways:
                if gateway.name in reached:
                    continue
                try:
                    ready = http.get(f"{gateway.url}/readyz").status_code == 200
                except httpx.HTTPError:
                    ready = False
                if not ready:
                    reached[gateway.name] = clock()
            if time.monotonic() > deadline:
                raise BurdenError([f"the gateways still report ready {timeout:.0f} s after the failure"])
            time.sleep(0.05)
    return reached


@dataclass
class Prober:
    """A background client sending one short request every ``interval`` to every gateway.

    It measures what users would have seen during a drill: failed requests and the
    longest outage (from the first failure to the next success) on any gateway.
    """

    client: Access
    clock: Clock
    interval: float = 0.25
    samples: list[tuple[str, float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name="drill-prober", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self._stop.is_set():
                for gateway in self.client.gateways:
                    self.samples.append((gateway.name, self.clock(), one_request(http, gateway.url, self.client)))
                self._stop.wait(self.interval)

    @property
    def failed(self) -> int:
        return sum(1 for _, _, status in self.samples if status != 200)

    def longest_outage(self) -> float:
        longest = 0.0
        for gateway in self.client.gateways:
            down_since: float | None = None
            for name, at, status in self.samples:
                if name != gateway.name:
                    continue
                if status != 200 and down_since is None:
                    down_since = at
                elif status == 200 and down_since is not None:
                    longest = max(longest, at - down_since)
                    down_since = None
            if down_since is not None:
                longest = max(longest, self.samples[-1][1] - down_since)
        return longest
