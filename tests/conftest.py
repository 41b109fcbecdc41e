"""Fixtures and hooks every test folder may use."""

from __future__ import annotations

import pytest

# `make test` runs two lanes side by side (pytest-xdist, `-n 2 --dist loadgroup`): the edge
# fleet's modules in one, everything else in the other, each lane's modules in file order on
# one worker. Only one fleet is ever up (nodes' names and subnets are fixed), module fixtures
# are made once, and the local stacks (fixed loopback ports) never overlap. What both lanes
# build (wheels, Debian packages, base root filesystems, images) is filled once under a lock
# (triptyque.cachefill, triptyque.rootfs, triptyque.images.build).
FLEET_LANE, HOST_LANE = "fleet", "host"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        lane = FLEET_LANE if item.get_closest_marker("fleet") else HOST_LANE
        item.add_marker(pytest.mark.xdist_group(lane))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
