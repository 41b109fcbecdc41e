"""Drill hooks of the edge target (``EdgeTarget.drill_hooks()``).

What the phases mean on edge, read from the rollout's own progress (Ansible task names):
    infra_ready       every node passed preflight over SSH (first "Install |" task starts)
    engine_installed  the bundle is on every node and the virtualenvs are built
                      (first "Configure |" task starts)
    weights_loaded    not observed from the controller (it is in each node's journal)
    ready / first_token   as for every target

Crash and reboot act on one node through Ansible ad hoc commands, so they work on any
fleet the inventory describes; a test harness may pass its own ``reboot`` (a node of
the systemd-nspawn test fleet cannot reboot itself). systemd restarts a crashed engine
(``Restart=on-failure`` in the unit), so an engine crash needs no human step.

Pull nodes apply a deployment themselves, on their agent's next poll after ``up`` published
it: ``applied`` waits for each one's report of that publication, applied and ready, sent after
``up`` was issued, so that a deploy, upgrade or rollback drill times the nodes' catch-up, not
the publication. (A report from before proves nothing after a ``down``; when the publication
did not change, the proof is the node's next periodic report, ``triptyque_pull_report_seconds``.)
On a fleet of pull nodes only, infra_ready and engine_installed mark the enrollment (pull.yml).

Upgrade and rollback change the engine's configuration (``max_model_len``), which the
rollout treats like any release: staged on every node, then restarted one node at a
time behind the health gate. No second vLLM version is available offline here; a
version upgrade takes the same path with a rebuilt bundle.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from triptyque.edge import pull
from triptyque.edge.runner import ansible_tool
from triptyque.errors import TargetError
from triptyque.spec import ServiceSpec
from triptyque.targets.hooks import DrillHooks
from triptyque.types import Access
from triptyque.wait import WaitTimeout, wait_until

if TYPE_CHECKING:
    from triptyque.targets.edge import EdgeTarget

ENGINE_UNIT = "triptyque-engine.service"
# A pull node starts converging within its watcher's poll (2 s) of a new publication; a first
# install on a slow node takes minutes. A node offline longer is reported, not waited for.
APPLY_TIMEOUT_SECONDS = 1800.0


class EdgeHooks(DrillHooks):
    cli_name = "edge"
    can_crash_engine = True
    self_heals = True
    can_reboot_node = True
    can_change_spec = True

    def __init__(self, target: EdgeTarget, reboot: Callable[[str], str] | None = None) -> None:
        self.target = target
        self._reboot = reboot

    def access(self) -> Access:
        return Access(self.target.gateways(), self.target.secrets()["api_key"], self.target.spec.model.served_name)

    def deployed(self) -> bool:
        if not (self.target.root / "secrets.json").exists():
            return False
        with httpx.Client(timeout=3.0) as http:
            for gateway in self.target.gateways():
                try:
                    http.get(f"{gateway.url}/healthz")
                except httpx.HTTPError:
                    return False
        return True

    def progress_phases(self) -> dict[str, str]:
        return {r"^Install \|": "infra_ready", r"^Configure \|": "engine_installed"}

    def _ad_hoc(self, node: str, module: str, args: str, timeout: float = 600) -> str:
        argv = [ansible_tool("ansible"), "-i", str(self.target.inventory), node, "--become", "-m", module, "-a", args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            output = " ".join((done.stdout + done.stderr).split())
            raise TargetError(f"{node}: {module} {args!r} failed ({done.returncode}): {output[:600]}")
        return f"ansible -i {self.target.inventory} {node} --become -m {module} -a '{args}'"

    def applied(self, now: Callable[[], float], since: float,
                timeout: float = APPLY_TIMEOUT_SECONDS) -> dict[str, float]:
        pulled = [node.name for node in self.target.nodes() if node.mode == "pull"]
        if not pulled:
            return {}
        published = pull.current_publication(self.target.root)
        if published is None:
            raise TargetError("no publication for the pull nodes yet: run `triptyque up edge` first")
        publication = published["id"]
        seen: dict[str, float] = {}

        def all_applied() -> bool:
            last = pull.reports(self.target.root)
            for name in pulled:
                report = last.get(name, {})
                if name not in seen and report.get("applied_publication") == publication \
                        and report.get("ready") is True and float(report.get("received_at", 0.0)) >= since:
                    seen[name] = now()
            return len(seen) == len(pulled)

        started = time.monotonic()
        try:
            wait_until(all_applied, timeout=timeout, interval=0.5, what="the pull nodes to apply the publication")
        except WaitTimeout:
            missing = ", ".join(name for name in pulled if name not in seen)
            raise TargetError(f"pull node(s) {missing} did not report publication {publication} applied and "
                              f"ready within {time.monotonic() - started:.0f} s: offline, or their converge "
                              "failed (`triptyque status --target edge` shows their last report)") from None
        return seen

    def crash_engine(self) -> str:
        # SIGKILL to the main process, as the OOM killer does; systemd then stops the rest of the
        # unit and restarts it. (`systemctl kill` to the whole unit races with a unit just started.)
        node = self.nodes()[0]
        return self._ad_hoc(node, "ansible.builtin.shell",
                            f'kill -KILL "$(systemctl show --property=MainPID --value {ENGINE_UNIT})"')

    def nodes(self) -> list[str]:
        return [node.name for node in self.target.nodes()]

    def reboot_node(self, node: str) -> str:
        if self._reboot is not None:
            return self._reboot(node)
        return self._ad_hoc(node, "ansible.builtin.reboot", "reboot_timeout=900", timeout=960)

    def with_spec(self, spec: ServiceSpec) -> tuple[EdgeTarget, DrillHooks]:
        target = type(self.target)(spec, self.target.root, self.target.inventory,
                            bundle_dir=self.target.bundle_dir if self.target.prebuilt_bundle else None,
                            cache_dir=self.target.cache_dir)
        return target, EdgeHooks(target, self._reboot)

    def upgraded(self, spec: ServiceSpec) -> tuple[ServiceSpec, str]:
        before = spec.engine.max_model_len
        after = before - 64 if before > 128 else before + 64
        changed = spec.model_copy(update={"engine": spec.engine.model_copy(update={"max_model_len": after})})
        return changed, f"engine configuration: max_model_len {before} -> {after}"
