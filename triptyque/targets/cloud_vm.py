"""cloud-vm: Scaleway GPU instances created by Pulumi, then configured as an edge fleet."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from triptyque.errors import TargetError, TriptyqueError
from triptyque.spec import ServiceSpec
from triptyque.targets.base import Target
from triptyque.targets.pulumi import PulumiStack, StackFactory, Which, automation_stack
from triptyque.types import Endpoint, NodeReport, Progress

if TYPE_CHECKING:
    from triptyque.targets.hooks import DrillHooks

EdgeFactory = Callable[[ServiceSpec, Path, Path], Target]


def _edge_target(spec: ServiceSpec, root: Path, inventory: Path) -> Target:
    from triptyque.targets.edge import EdgeTarget

    return EdgeTarget(spec, root / "edge", inventory)


class CloudVmTarget(PulumiStack):
    """Scaleway GPU instances from Pulumi, then the edge target with the exported inventory."""

    def __init__(
        self,
        spec: ServiceSpec,
        *,
        state_root: Path,
        root: Path | None = None,
        env: Mapping[str, str] | None = None,
        which: Which = shutil.which,
        stack_factory: StackFactory = automation_stack,
        edge_factory: EdgeFactory | None = None,
    ) -> None:
        super().__init__("cloud-vm", spec, root=root, env=env, which=which, stack_factory=stack_factory)
        self._edge_factory = edge_factory or _edge_target
        self.state_root = state_root
        self.inventory = state_root / "cloud-vm" / "inventory.yml"

    def drill_hooks(self) -> DrillHooks:
        raise TargetError("drills run on the edge target; cloud-vm's are modelled (see `triptyque compare`)")

    def _edge(self) -> Target:
        if not self.inventory.is_file():
            raise TargetError(f"no inventory at {self.inventory}: run `triptyque up cloud-vm` first")
        try:
            # Its own state folder: the same checkout may also run a real edge fleet.
            return self._edge_factory(self.spec, self.state_root / "cloud-vm", self.inventory)
        except TriptyqueError as exc:
            raise TargetError(f"cloud-vm hands its machines to the edge target: {exc}") from None

    def up(self, progress: Progress) -> list[Endpoint]:
        outputs = self._pulumi_up(progress)
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(str(outputs["inventory"]), encoding="utf-8")
        progress(f"inventory of the GPU instances written to {self.inventory}")
        endpoints: list[Endpoint] = self._edge().up(progress)
        return endpoints

    def status(self) -> list[NodeReport]:
        reports: list[NodeReport] = self._edge().status()
        return reports

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        reports: list[NodeReport] = self._edge().kill(operator, reason, hard=hard)
        return reports

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        reports: list[NodeReport] = self._edge().resume(operator, reason)
        return reports
