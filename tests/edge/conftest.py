"""Fixtures for the edge target: the spec, and a real two-node (mixed) fleet converged once.

The fleet fixtures are module-scoped: ``test_fleet.py`` walks one fleet through its
life (check mode, converge, idempotence, serving, kill, crash, failed upgrade, down)
in file order, each test building on the state the previous one left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT
from tests.support.fleet import Fleet, Node
from triptyque.edge.bundle import Manifest
from triptyque.spec import DEFAULT_SPEC, ServiceSpec, load_spec
from triptyque.targets.edge import EdgeTarget

CACHE = Path(os.environ.get("TRIPTYQUE_CACHE", ROOT / ".cache" / "triptyque"))
FLEET_SIZE = 2
FIREWALLED = (1,)  # edge1 runs an active ufw, edge2 an inactive one


class Log:
    """A progress callback that keeps the messages and stamps them for the test log."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {message}"
        self.lines.append(line)
        print(line, flush=True)


@pytest.fixture(scope="session")
def edge_spec() -> ServiceSpec:
    return load_spec(ROOT / DEFAULT_SPEC, target="edge")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    if os.geteuid() != 0:
        pytest.skip("the test fleet needs root (network namespaces, overlayfs, systemd-nspawn)")
    with Fleet(FLEET_SIZE, cache_dir=CACHE, firewalled=FIREWALLED) as running:
        yield running


@pytest.fixture(scope="module")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-state")


# A mixed fleet: edge1 runs real vLLM (CPU build), edge2 the `fake` engine profile (the same
# roles, units, gateway and health gate in front of bench/fake_engine.py). The per-host
# engine build comes from the inventory and the bundle holds both; one vLLM node is what
# proves the real engine path, and a second one would double the slowest steps of the suite
# on a 2-core machine (every converge, restart and resume waits for vLLM to load).
ENGINES = {"edge1": "cpu", "edge2": "fake"}


@pytest.fixture(scope="module")
def inventory(fleet: Fleet, state_root: Path) -> Path:
    return fleet.write_inventory(state_root / "inventory.yml", host_vars={
        name: {"triptyque_engine_device": engine} for name, engine in ENGINES.items() if engine != "cpu"})


@pytest.fixture(scope="module")
def bundle(edge_spec: ServiceSpec, state_root: Path, inventory: Path) -> tuple[Path, Manifest]:
    """Built once per fleet; every EdgeTarget of the module then uses it as prebuilt."""
    target = EdgeTarget(edge_spec, state_root / "edge", inventory,
                        bundle_dir=state_root / "bundle", cache_dir=CACHE)
    return state_root / "bundle", target.build_bundle(Log())


@pytest.fixture(scope="module")
def edge(edge_spec: ServiceSpec, state_root: Path, inventory: Path,
         bundle: tuple[Path, Manifest]) -> EdgeTarget:
    return EdgeTarget(edge_spec, state_root / "edge", inventory, bundle_dir=bundle[0],
                      cache_dir=CACHE)


def gateway(node: Node, port: int) -> str:
    return f"http://{node.address}:{port}"


def wait_ready(url: str, timeout: float = 300.0) -> float:
    """Seconds until ``url``/readyz answers 200; fails the test after ``timeout``."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        try:
            response = httpx.get(f"{url}/readyz", timeout=3.0)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1.0)
    pytest.fail(f"{url} not ready after {timeout:.0f} s; last answer: {last}")
