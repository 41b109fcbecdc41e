"""The kinds of target: what each one is and what it can do, written once.

The CLI, the stacks, monitoring and burden ask this registry; none of them restates
that cloud-vm deploys with the cloud's spec overlay, or which targets can preview a
plan, run drills, scale or stop their engine. Building a target object is
``triptyque.targets.registry``'s job; this module is pure data, below the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

TargetName = Literal["local", "edge", "onprem", "cloud", "cloud-vm"]
# The ``targets.<name>`` overlays a spec may carry (cloud-vm has none of its own).
SpecOverlay = Literal["local", "edge", "onprem", "cloud"]


class Capability(Enum):
    PREVIEW = "preview"        # show a plan before deploying (Pulumi)
    DRILLS = "drills"          # drills run for real here
    SCALE = "scale"            # the engine's replicas can change
    HARD_KILL = "hard_kill"    # a kill can also stop the engine
    RENDER = "render"          # plain Kubernetes manifests can be written


@dataclass(frozen=True)
class TargetKind:
    name: TargetName
    overlay: SpecOverlay
    capabilities: frozenset[Capability]
    description: str
    # How the service is deployed there: monitoring and the report group targets by it.
    platform: Literal["local", "edge", "kubernetes"]
    stack: bool = False  # deployed by the Pulumi program in stacks/

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


_C = Capability
KINDS: dict[TargetName, TargetKind] = {
    kind.name: kind for kind in (
        TargetKind("local", "local", frozenset({_C.DRILLS, _C.HARD_KILL}),
                   "one machine, vLLM on the CPU", "local"),
        TargetKind("edge", "edge", frozenset({_C.DRILLS, _C.HARD_KILL}),
                   "a fleet of Linux nodes configured by Ansible over SSH", "edge"),
        TargetKind("onprem", "onprem", frozenset({_C.PREVIEW, _C.SCALE, _C.HARD_KILL, _C.RENDER}),
                   "an existing Kubernetes GPU cluster, by Pulumi", "kubernetes", stack=True),
        TargetKind("cloud", "cloud", frozenset({_C.PREVIEW, _C.SCALE, _C.HARD_KILL, _C.RENDER}),
                   "Scaleway Kapsule with a GPU pool, by Pulumi", "kubernetes", stack=True),
        # The cloud's IaaS flavour: the cloud's overlay (same GPU type), configured by the edge path.
        TargetKind("cloud-vm", "cloud", frozenset({_C.PREVIEW, _C.HARD_KILL}),
                   "Scaleway GPU instances by Pulumi, configured by the edge playbooks", "edge",
                   stack=True),
    )
}
TARGET_NAMES: tuple[TargetName, ...] = get_args(TargetName)
OVERLAYS: tuple[SpecOverlay, ...] = get_args(SpecOverlay)


def names_with(capability: Capability) -> tuple[TargetName, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.supports(capability))


def listing(names: tuple[str, ...] = TARGET_NAMES) -> str:
    """``a, b or c`` for messages and help texts."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def kind_of(name: str) -> TargetKind:
    """The kind named ``name``; ValueError (with the valid names) for anything else."""
    for kind_name, kind in KINDS.items():
        if kind_name == name:
            return kind
    raise ValueError(f"unknown target {name!r}; use {listing()}")
