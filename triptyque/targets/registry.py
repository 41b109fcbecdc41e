"""Builds the Target object for a target name; the CLI and burden call only this.

What each kind is and supports is ``triptyque.kinds``; this module turns a name into
the object that deploys it.
"""

from __future__ import annotations

from pathlib import Path

from triptyque.errors import TargetError
from triptyque.kinds import Capability, TargetKind, kind_of, listing, names_with
from triptyque.spec import ServiceSpec
from triptyque.targets.base import PlannedTarget, Target


def target_kind(name: str) -> TargetKind:
    try:
        return kind_of(name)
    except ValueError as exc:
        raise TargetError(str(exc)) from None


def make_target(
    name: str, spec: ServiceSpec, *, state_root: Path, inventory: Path | None = None
) -> Target:
    kind = target_kind(name)
    if kind.name == "local":
        from triptyque.targets.local import LocalTarget

        return LocalTarget(spec, state_root / "local")
    if kind.name == "edge":
        if inventory is None:
            raise TargetError("the edge target needs an inventory: pass --inventory FILE")
        from triptyque.targets.edge import EdgeTarget

        return EdgeTarget(spec, state_root / "edge", inventory)
    if kind.name == "cloud-vm":
        from triptyque.targets.cloud_vm import CloudVmTarget

        return CloudVmTarget(spec, state_root=state_root)
    return _kubernetes(kind, spec, state_root)


def _kubernetes(kind: TargetKind, spec: ServiceSpec, state_root: Path) -> PlannedTarget:
    from triptyque.targets.kubernetes import KubernetesTarget

    if kind.name == "onprem" or kind.name == "cloud":
        return KubernetesTarget(kind.name, spec, state_root=state_root)
    raise TargetError(f"{kind.name} is not a Kubernetes target")


def make_planned(name: str, spec: ServiceSpec, *, state_root: Path) -> PlannedTarget:
    """A target that can preview its plan; TargetError naming those that can for any other."""
    kind = target_kind(name)
    if not kind.supports(Capability.PREVIEW):
        raise TargetError(f"preview is for {listing(names_with(Capability.PREVIEW))}; "
                          f"{name} has no plan to show")
    if kind.name == "cloud-vm":
        from triptyque.targets.cloud_vm import CloudVmTarget

        return CloudVmTarget(spec, state_root=state_root)
    return _kubernetes(kind, spec, state_root)
