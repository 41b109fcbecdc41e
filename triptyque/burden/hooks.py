"""Which drill hooks a target has: asked of the target kind, then of the target."""

from __future__ import annotations

from triptyque.burden.errors import BurdenError
from triptyque.kinds import Capability, kind_of
from triptyque.targets.base import Target
from triptyque.targets.hooks import DrillHooks


def hooks_for(target: Target) -> DrillHooks:
    if not kind_of(target.name).supports(Capability.DRILLS):
        raise BurdenError([f"no drills for the {target.name} target here: Kubernetes drills are modelled "
                           "(see `triptyque compare`), they cannot run without a cluster"])
    return target.drill_hooks()
