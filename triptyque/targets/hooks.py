"""What a drill needs from a target beyond the Target protocol (``DrillHooks``).

Each target that runs drills here keeps its hooks beside it (``local_hooks.py``,
``edge_hooks.py``) and hands them out with ``Target.drill_hooks()``; the drills
themselves live in ``triptyque.burden.drills`` and only call these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from triptyque.spec import ServiceSpec
from triptyque.types import Access, Progress

if TYPE_CHECKING:
    from triptyque.targets.base import Target


class DrillHooks:
    """What a drill needs beyond the Target protocol. Every capability is optional.

    Subclasses set the flags of what they support; the base refuses politely.
    """

    cli_name = "local"
    can_crash_engine = False
    self_heals = False
    can_reboot_node = False
    can_change_spec = False
    # The spec an upgrade or rollback drill last deployed, so a rollback right after an
    # upgrade does not deploy the upgrade again as its preparation.
    deployed_spec: ServiceSpec | None = None

    def access(self) -> Access:
        """How a client reaches the deployed gateways."""
        raise NotImplementedError

    def deployed(self) -> bool:
        return bool(self.access().gateways)

    def deploy_probes(self) -> dict[str, Callable[[], bool]]:
        """Phase name -> a check polled while ``up`` runs; the first True marks the phase."""
        return {}

    def progress_phases(self) -> dict[str, str]:
        """Regular expression on ``up``'s progress messages -> the phase it marks."""
        return {}

    def applied(self, now: Callable[[], float], since: float) -> dict[str, float]:
        """After ``up`` returned: wait until the nodes that converge themselves (edge pull
        nodes) run what it deployed; per node, the drill time (``now()``) it was seen. Empty
        when ``up`` returns only once every node applied it (every push target).
        ``since`` is the wall-clock time ``up`` was issued."""
        return {}

    def crash_engine(self) -> str:
        """Crash the engine of one node (or every node) as an OOM kill would; return the command."""
        raise NotImplementedError

    def recovery(self, operator: str, progress: Progress) -> list[tuple[str, str, Callable[[], object]]]:
        """What an operator tries after an engine crash, in order: (action, command, do it)."""
        return []

    def nodes(self) -> list[str]:
        return [g.name for g in self.access().gateways]

    def reboot_node(self, node: str) -> str:
        """Reboot one node; return once it went down (it may be back already) with the command run."""
        raise NotImplementedError

    def with_spec(self, spec: ServiceSpec) -> tuple[Target, DrillHooks]:
        """The same target deployed from another spec (upgrade and rollback drills)."""
        raise NotImplementedError

    def upgraded(self, spec: ServiceSpec) -> tuple[ServiceSpec, str]:
        """The spec of an upgrade and what it changes, in words."""
        raise NotImplementedError
