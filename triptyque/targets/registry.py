"""Builds the Target object for a target name; the CLI calls only this."""

from __future__ import annotations

from pathlib import Path

from triptyque.errors import TargetError
from triptyque.spec import ServiceSpec
from triptyque.targets.base import Target


def make_target(
    name: str, spec: ServiceSpec, *, state_root: Path, inventory: Path | None = None
) -> Target:
    if name == "local":
        from triptyque.targets.local import LocalTarget

        return LocalTarget(spec, state_root / "local")
    if name == "edge":
        if inventory is None:
            raise TargetError("the edge target needs an inventory: pass --inventory FILE")
        from triptyque.targets.edge import EdgeTarget

        return EdgeTarget(spec, state_root / "edge", inventory)
    if name in ("onprem", "cloud"):
        from triptyque.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(name, spec, state_root=state_root)  # type: ignore[arg-type]
    if name == "cloud-vm":
        from triptyque.targets.kubernetes import CloudVmTarget

        return CloudVmTarget(spec, state_root=state_root)
    raise TargetError(f"unknown target {name!r}; use local, edge, onprem or cloud")
