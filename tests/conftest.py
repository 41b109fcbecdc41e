"""Fixtures and hooks every test folder may use."""

from __future__ import annotations

from typing import Any

import pytest

# `make test` runs two lanes side by side (pytest-xdist, `-n 2 --dist loadscope`): the modules
# that boot the edge test fleet in one, everything else in the other, each lane's modules in
# file order on one worker. Only one fleet is ever up (nodes' names and subnets are fixed),
# module fixtures are made once, and the local stacks (fixed loopback ports) never overlap.
# What both lanes build (wheels, Debian packages, base root filesystems, images) is filled
# once under a lock (triptyque.cachefill, triptyque.rootfs, triptyque.images.build).
#
# The lanes are xdist's scopes (below), not `xdist_group` marks: with pytest 9.2,
# `--dist loadgroup` silently stops grouping (https://github.com/pytest-dev/pytest-xdist/issues/1386).
FLEET_MODULES = frozenset({
    "tests/burden/test_drills_edge.py",
    "tests/edge/test_fleet.py",
    "tests/edge/test_platforms.py",
    "tests/edge/test_pull.py",
    "tests/edge/test_scale.py",
})
FLEET_LANE, HOST_LANE = "fleet", "host"


def lane(nodeid: str) -> str:
    return FLEET_LANE if nodeid.split("::", 1)[0] in FLEET_MODULES else HOST_LANE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that boots the fleet outside FLEET_MODULES would share the machine's one fleet
    with the fleet lane: refuse the run instead."""
    strays = sorted({item.nodeid.split("::", 1)[0] for item in items
                     if item.get_closest_marker("fleet") and lane(item.nodeid) != FLEET_LANE})
    if strays:
        raise pytest.UsageError(f"fleet tests outside the fleet lane: add {', '.join(strays)} to "
                                "FLEET_MODULES in tests/conftest.py")


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
