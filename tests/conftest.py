"""Fixtures and hooks every test folder may use."""

from __future__ import annotations

from typing import Any

import pytest

# `make test` runs two lanes side by side (pytest-xdist, `-n 2 --dist loadscope`), each lane's
# modules in file order on one worker, so module fixtures are made once and the local stacks
# (fixed loopback ports) never overlap. FLEET_LANE holds the longest edge-fleet modules; the
# other lane runs everything else, the two shorter fleet modules included: fleets run beside
# each other (tests/support/fleet.py names everything by run and claims subnets under a lock).
# What both lanes build (wheels, Debian packages, base root filesystems, images) is filled
# once under a lock (triptyque.cachefill, triptyque.rootfs, triptyque.images.build).
# Measured (2026-12-01, warm caches): 29 min for the whole suite; with every fleet module in one
# lane, 30 min for that lane while the other idled after 17; in one process, 48 min in CI.
#
# The lanes are xdist's scopes (below), not `xdist_group` marks: with pytest 9.2,
# `--dist loadgroup` silently stops grouping (https://github.com/pytest-dev/pytest-xdist/issues/1386).
FLEET_LANE_MODULES = frozenset({
    "tests/edge/test_fleet.py",
    "tests/edge/test_pull.py",
    "tests/edge/test_scale.py",
})
FLEET_LANE, HOST_LANE = "fleet", "host"


def lane(nodeid: str) -> str:
    return FLEET_LANE if nodeid.split("::", 1)[0] in FLEET_LANE_MODULES else HOST_LANE


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no annotations here
        def _split_scope(self, nodeid: str) -> str:
            return lane(nodeid)

    return Lanes(config, log)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
