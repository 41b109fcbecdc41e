"""The kill-switch timing that ``bench/killswitch.py`` measures, checked for what it asserts,
not for its times (those live in ``make bench``): every open stream is cut, every gateway
starts refusing, and nothing is left engaged afterwards."""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import killswitch
from tests.resilience.conftest import CHAT


def test_a_kill_cycle_cuts_every_open_stream_and_refuses_on_every_gateway(serve: Any) -> None:
    gateways = [serve(), serve()]
    targets = [killswitch.loopback(g.port) for g in gateways]
    result = asyncio.run(killswitch.cycle(targets, streams=3))
    assert result.uncut == 0
    assert len(result.first_refused) == len(result.last_cut) == 2
    assert all(math.isfinite(t) and t > 0 for t in result.first_refused + result.last_cut)
    assert all(g.status()["engaged"] is False for g in gateways)  # the cycle resumes
    rows = killswitch.rows("two gateways", [result], limit=60.0)
    assert {r.metric: r.ok for r in rows}["streams not cut"] is True
    assert all(r.ok is not False for r in rows), rows


def draining(serve: Any) -> Any:
    """A gateway with ``kill_switch.cut_streams: false``: a kill refuses new requests only."""
    gateway = serve()
    gateway.procs.stop("gateway")
    gateway.settings = gateway.settings.model_copy(update={
        "kill_switch": gateway.settings.kill_switch.model_copy(update={"cut_streams": False})})
    gateway.start_gateway()
    return gateway


def test_a_stream_the_gateway_fails_to_cut_is_counted_as_uncut(serve: Any) -> None:
    """With ``kill_switch.cut_streams: false`` streams outlive the kill: the bench must say so."""
    gateway = draining(serve)
    result = asyncio.run(killswitch.cycle([killswitch.loopback(gateway.port)], streams=2))
    assert result.uncut == 2


def test_without_cut_streams_a_kill_drains_what_is_in_flight_and_refuses_the_rest(serve: Any) -> None:
    gateway = draining(serve)
    with ThreadPoolExecutor(1) as pool, gateway.client() as client:
        slow = pool.submit(client.post, "/v1/chat/completions", json=CHAT,
                           headers={"x-fake-first-byte-delay": "1.0"})
        time.sleep(0.3)
        assert gateway.admin("kill").status_code == 200
        after = client.post("/v1/chat/completions", json=CHAT)
        in_flight = slow.result(timeout=10)
    assert in_flight.status_code == 200
    assert after.status_code == 503 and after.json()["error"]["code"] == "kill_switch_engaged"
