"""The fleet-wide admin calls (``triptyque kill``/``resume``/``status`` on edge and clusters)."""

from __future__ import annotations

import asyncio
import time

from triptyque.targets.base import _tls, admin_fleet
from triptyque.types import Endpoint


def test_certificates_are_loaded_only_for_gateways_behind_tls() -> None:
    plain = [Endpoint("edge1", "http://10.0.0.2:8080"), Endpoint("edge2", "http://10.0.0.3:8080")]
    assert _tls(plain) is False
    assert _tls([*plain, Endpoint("lb", "https://gw.example.org")]) is True


def test_a_kill_to_an_unreachable_gateway_is_reported_per_node_not_raised() -> None:
    started = time.perf_counter()
    reports = asyncio.run(admin_fleet([Endpoint("gone", "http://127.0.0.1:9")], "k", "kill", "ops", "test",
                                      timeout=2.0))
    assert [(r.node, r.reachable) for r in reports] == [("gone", False)]
    assert time.perf_counter() - started < 2.0

