"""Pulumi's mocks, set once before the program is imported, and a runner for one stack.

``run_stack(config)`` runs ``stacks.program.build`` under the mocks and returns every
resource it registered as the policy pack would see it (type, URN, inputs, provider
inputs) together with the stack's resolved outputs.
"""

from __future__ import annotations

import asyncio
import gc
import runpy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests.support import ROOT as REPO


class TriptyqueMocks(pulumi.runtime.Mocks):
    """Echo inputs back as state, plus the computed outputs the program reads."""

    def __init__(self) -> None:
        self.registered: dict[tuple[str, str], pulumi.runtime.MockResourceArgs] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered[(args.typ, args.name)] = args
        state = dict(args.inputs)
        if args.typ == "scaleway:kubernetes/cluster:Cluster":
            state["kubeconfigs"] = [{"configFile": "apiVersion: v1\nkind: Config\n"}]
        if args.typ == "scaleway:instance/ip:Ip":
            state["address"] = f"51.15.0.{10 + len(self.registered)}"
        if args.typ == "scaleway:network/publicGatewayIp:PublicGatewayIp":
            state["address"] = "51.158.0.7"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        return {}


# Resource options never reach Mocks.new_resource; the custom timeouts Pulumi would send
# to the engine are kept here, by URN, from the registration request itself.
TIMEOUTS: dict[str, dict[str, str]] = {}
# Likewise the fields Pulumi is told to leave alone after creation, by URN.
IGNORED: dict[str, list[str]] = {}
_register_resource: Callable[[Any, Any], Any] = pulumi.runtime.mocks.MockMonitor.RegisterResource


def _register_keeping_timeouts(self: Any, request: Any) -> Any:
    response = _register_resource(self, request)
    if request.ignoreChanges:
        IGNORED[response.urn] = list(request.ignoreChanges)
    if request.HasField("customTimeouts"):
        timeouts = request.customTimeouts
        TIMEOUTS[response.urn] = {"create": timeouts.create, "update": timeouts.update,
                                  "delete": timeouts.delete}
    return response


pulumi.runtime.mocks.MockMonitor.RegisterResource = _register_keeping_timeouts  # type: ignore[method-assign]

MOCKS = TriptyqueMocks()
# Pulumi's mocks keep futures of the loop current when they are set; async tests elsewhere
# (anyio) replace and close the current loop, so every run goes back to this one.
PULUMI_LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(PULUMI_LOOP)
pulumi.runtime.set_mocks(MOCKS, project="triptyque", stack="test", preview=False)

from stacks.policies.rules import Seen  # noqa: E402
from stacks.program import build  # noqa: E402
from triptyque.k8s.config import StackConfig, load_stack_config  # noqa: E402


@dataclass(frozen=True)
class Ran:
    resources: list[Seen]
    outputs: dict[str, Any]
    timeouts: dict[str, dict[str, str]] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> list[Seen]:
        return [r for r in self.resources if r.type == resource_type]

    def one(self, resource_type: str, name: str) -> Seen:
        found = [r for r in self.of_type(resource_type) if r.urn.endswith(f"::{name}")]
        assert len(found) == 1, f"expected one {resource_type} named {name}, found {len(found)}"
        return found[0]


def _monitor_resources() -> dict[str, Any]:
    monitor: Any = pulumi.runtime.settings.get_monitor()
    resources: dict[str, Any] = monitor.resources  # the mock monitor keeps URN -> registration
    return resources


def run_stack(config: StackConfig) -> Ran:
    outputs: dict[str, Any] = {}

    def program() -> Any:
        return pulumi.Output.all(**build(config, REPO)).apply(outputs.update)

    ran = _run(program)
    return Ran(ran.resources, outputs, ran.timeouts)


def _run(program: Callable[[], Any]) -> Ran:
    asyncio.set_event_loop(PULUMI_LOOP)
    MOCKS.registered.clear()
    TIMEOUTS.clear()
    IGNORED.clear()
    _monitor_resources().clear()
    pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]
    by_urn = _monitor_resources()
    seen = []
    for urn in by_urn:
        qualified, name = urn.rsplit("::", 2)[-2:]
        resource_type = qualified.split("$")[-1]
        args = MOCKS.registered.get((resource_type, name))
        if args is None:
            continue
        provider_urn = (args.provider or "").rsplit("::", 1)[0]
        provider = by_urn[provider_urn].state if provider_urn in by_urn else {}
        seen.append(Seen(resource_type, urn, dict(args.inputs), dict(provider)))
    return Ran(seen, {}, dict(TIMEOUTS))


def run_entry_point() -> Ran:
    """``stacks/__main__.py`` itself, as Pulumi runs it, under the mocks."""
    def program() -> None:
        runpy.run_path(str(REPO / "stacks" / "__main__.py"), run_name="__main__")

    return _run(program)


def example(name: str, spec: Path) -> StackConfig:
    """The repository's example stack file, pointed at a spec with test digests."""
    return load_stack_config(REPO, name).model_copy(update={"spec": spec})


@pytest.fixture(scope="session", autouse=True)
def _close_pulumi_loops() -> Iterator[None]:
    yield
    asyncio.set_event_loop(None)
    # The mock monitor opens an event loop in each of its worker threads and never closes
    # them; with warnings as errors their ResourceWarning would fail the session.
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if not loop.is_running() and not loop.is_closed():
            loop.close()


@pytest.fixture(scope="session")
def test_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.k8s.conftest import write_spec

    return write_spec(tmp_path_factory.mktemp("stack-spec"))


@pytest.fixture(scope="session")
def stacks(test_spec: Path) -> dict[str, Ran]:
    return {name: run_stack(example(name, test_spec)) for name in ("onprem", "cloud", "cloud-vm")}
