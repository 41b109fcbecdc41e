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
    raise TargetError(f"unknown target {name!r}; use local, edge, onprem or cloud")
