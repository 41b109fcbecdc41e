"""The edge target: a fleet of Debian nodes converged by Ansible from an offline bundle.

Layout of the state folder (``.triptyque/edge`` by default)::

    secrets.json     generated API and admin keys (mode 600; only hashes reach the nodes)
    vars.json        the extra vars of the last converge, rendered from the spec
    bundle/          the offline bundle (``triptyque bundle``), unless TRIPTYQUE_BUNDLE names one
    runs/<ident>/    events.jsonl and summary.json of every Ansible run
    runner/          ansible-runner's private folder
    hard-kill.json   which nodes had their engine stopped by ``kill --hard``
    pull/            what pull nodes fetch, the fleet's kill state for them, their reports
                     (``triptyque.edge.pull``; served by ``triptyque pull-serve``)

``up`` renders the playbook's variables from the spec and runs ``playbooks/site.yml``;
``kill`` and ``resume`` speak to every gateway at once over HTTP, and ``--hard`` also
stops the engines through systemd.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triptyque.targets.edge_hooks import EdgeHooks

from triptyque.edge import pull
from triptyque.edge.bundle import (
    EngineBuild,
    Manifest,
    PartSpec,
    build_for_spec,
    checkout,
    default_cache_dir,
    missing_parts,
    verify_bundle,
)
from triptyque.edge.inventory import EdgeNode, parts_needed, read_hostvars, read_inventory
from triptyque.edge.pull import Publication
from triptyque.edge.render import render_vars
from triptyque.edge.runner import RunSummary, ansible_tool, playbooks_dir, require_success, run_playbook
from triptyque.engine import default_device
from triptyque.errors import TargetError
from triptyque.keys import deployment_secrets, hash_key
from triptyque.spec import ServiceSpec
from triptyque.targets.base import admin_fleet, status_fleet
from triptyque.types import Endpoint, NodeReport, Progress

API_KEY_NAME = "edge"
ADMIN_KEY_NAME = "edge-admin"
ENGINE_TASK = "Service | Set the engine's state"
STATUS_TASK = "Status | Report"


def _quiet(_message: str) -> None:
    return None


class EdgeTarget:
    name = "edge"

    def __init__(self, spec: ServiceSpec, root: Path, inventory: Path, *,
                 bundle_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.spec, self.root, self.inventory = spec, root, inventory
        configured = bundle_dir or (Path(b) if (b := os.environ.get("TRIPTYQUE_BUNDLE")) else None)
        self.prebuilt_bundle = configured is not None
        self.bundle_dir = configured or root / "bundle"
        self.cache_dir = cache_dir

    # ---- nodes, keys, bundle -------------------------------------------------------------

    def nodes(self) -> list[EdgeNode]:
        return read_inventory(self.inventory, self.spec.gateway.port,
                              ansible_inventory=ansible_tool("ansible-inventory"))

    def drill_hooks(self, reboot: Callable[[str], str] | None = None) -> EdgeHooks:
        """``reboot`` replaces the Ansible reboot (a test-fleet node cannot reboot itself)."""
        from triptyque.targets.edge_hooks import EdgeHooks

        return EdgeHooks(self, reboot)

    def gateways(self) -> list[Endpoint]:
        return [Endpoint(node.name, node.gateway_url) for node in self.nodes()]

    def secrets(self, create: bool = False) -> dict[str, str]:
        """{"api_key": ..., "admin_key": ...}, generated on first use, readable by the owner only."""
        return deployment_secrets(self.root, create=create,
                                  missing=f"no edge deployment in {self.root}: run "
                                          "`triptyque up edge --inventory FILE` first")

    def admin_key(self) -> str:
        return os.environ.get("TRIPTYQUE_ADMIN_KEY") or self.secrets()["admin_key"]

    def build_bundle(self, progress: Progress, devices: tuple[EngineBuild, ...] | None = None,
                     parts: tuple[PartSpec, ...] | None = None) -> Manifest:
        """Build or refresh the bundle in the bundle folder (what ``triptyque bundle`` does).

        Without ``devices`` or ``parts``: a part per (platform, Python, engine build) the
        inventory's nodes run, so a mixed CPU/GPU/fake fleet gets every build it needs and an
        Ubuntu node packages from its own archive."""
        if devices is None and parts is None:
            parts = parts_needed(self.nodes(), default_device(self.spec))
        return build_for_spec(self.spec, self.bundle_dir, devices=devices, parts=parts, progress=progress,
                              cache_dir=self.cache_dir or default_cache_dir())

    def _bundle(self, progress: Progress) -> Manifest:
        if not self.prebuilt_bundle:
            return self.build_bundle(progress)
        manifest = verify_bundle(self.bundle_dir)
        if (manifest.engine_version, manifest.model_served_name) != (
                self.spec.engine.version, self.spec.model.served_name):
            raise TargetError(
                f"the bundle in {self.bundle_dir} holds vLLM {manifest.engine_version} and model "
                f"{manifest.model_served_name}, the spec asks for {self.spec.engine.version} and "
                f"{self.spec.model.served_name}: rebuild it with `triptyque bundle`")
        # Every node must find its engine build: nodes that name their platform in their part,
        # the others in the bundle's main part (whose platform the preflight then checks against
        # the node's own facts).
        wanted = parts_needed(self.nodes(), default_device(self.spec),
                              controller=(manifest.platform, manifest.python))
        missing = missing_parts(manifest, wanted)
        if missing:
            raise TargetError(f"the bundle in {self.bundle_dir} has no part for {', '.join(missing)}, which "
                              f"the inventory's nodes run: rebuild it with `triptyque bundle --inventory "
                              f"{self.inventory}`")
        progress(f"using bundle {manifest.id} from {self.bundle_dir}")
        return manifest

    def extravars(self, manifest: Manifest) -> dict[str, Any]:
        secrets = self.secrets(create=True)
        return render_vars(self.spec, manifest, bundle_dir=self.bundle_dir,
                           api_key_hashes={API_KEY_NAME: hash_key(secrets["api_key"])},
                           admin_key_hashes={ADMIN_KEY_NAME: hash_key(secrets["admin_key"])})

    # ---- up, down --------------------------------------------------------------------------

    def converge(self, progress: Progress, *, check: bool = False, diff: bool = False,
                 extra: dict[str, Any] | None = None, enroll: bool = False) -> RunSummary:
        """Run site.yml once and return its summary, failed or not (``up`` raises instead).
        Pull nodes get a new publication instead; ``enroll`` also installs their agent."""
        nodes = self.nodes()
        manifest = self._bundle(progress)
        rendered = self.extravars(manifest)
        (self.root / "vars.json").write_text(json.dumps(rendered, indent=2) + "\n")
        # Pull nodes converge themselves from the publication (triptyque.edge.pull); the
        # controller pushes to the others only.
        pulled = [n.name for n in nodes if n.mode == "pull"]
        if pulled and not check:
            self.publish_pull(manifest, {**rendered, **(extra or {})}, progress)
            if enroll:
                # Enrolled first, the pull nodes converge themselves while the others are pushed.
                self.enroll_pull(progress)
        pushed = [n.name for n in nodes if n.mode != "pull"]
        if not pushed:
            return RunSummary(ident="", playbook="site.yml", status="successful")
        return run_playbook("site.yml", inventory=self.inventory,
                            extravars={**rendered, **(extra or {})},
                            state_dir=self.root, progress=progress, check=check, diff=diff,
                            limit=",".join(pushed) if pulled else None)

    def up(self, progress: Progress) -> list[Endpoint]:
        nodes = self.nodes()
        progress(f"converging {len(nodes)} edge node(s): {', '.join(n.name for n in nodes)}")
        summary = require_success(self.converge(progress, enroll=True), "the edge rollout (site.yml)")
        if summary.ident:
            progress(f"converged in {summary.seconds:.0f} s, {summary.changed()} change(s); "
                     f"events in {summary.folder}")
        if any(n.mode == "pull" for n in nodes):
            progress("pull nodes converge themselves on their timer and report to the pull endpoint")
        return [Endpoint(f"{node.name} (OpenAI API)", f"{node.gateway_url}/v1") for node in nodes]

    # ---- pull mode ---------------------------------------------------------------------------

    def publish_pull(self, manifest: Manifest, rendered: dict[str, Any], progress: Progress) -> Publication:
        """What the pull nodes fetch: the same variables and roles as a push (edge.pull)."""
        hostvars = read_hostvars(self.inventory, ansible_inventory=ansible_tool("ansible-inventory"))
        nodes = {n.name: hostvars.get(n.name, {}) for n in self.nodes() if n.mode == "pull"}
        return pull.publish(self.root, manifest=manifest, bundle_dir=self.bundle_dir, extravars=rendered,
                            nodes=nodes, playbooks=playbooks_dir(), cache_dir=self.cache_dir or default_cache_dir(),
                            lock=checkout() / "requirements.lock", progress=progress)

    def enroll_pull(self, progress: Progress) -> RunSummary:
        """Install the pull agent on the pull nodes that answer now (pull.yml); one that is
        offline is reported and enrolled by a later ``up``."""
        names = [n.name for n in self.nodes() if n.mode == "pull"]
        secret = pull.fleet_secret(self.root, create=True)
        summary = run_playbook(
            "pull.yml", inventory=self.inventory, state_dir=self.root, progress=progress,
            limit=",".join(names),
            extravars={"triptyque_pull_tokens": {name: pull.node_token(secret, name) for name in names},
                       "triptyque_pull_gateway_port": self.spec.gateway.port,
                       "triptyque_pull_fleet_operators": [ADMIN_KEY_NAME]})
        for line in summary.failures:
            progress(f"pull node not enrolled ({line}): run `triptyque up edge` again once it is online")
        return summary

    def down(self, progress: Progress) -> None:
        self.nodes()
        require_success(run_playbook("down.yml", inventory=self.inventory, extravars={},
                                     state_dir=self.root, progress=progress), "down.yml")

    # ---- status, kill, resume --------------------------------------------------------------

    def status(self) -> list[NodeReport]:
        """Each gateway's readiness, with the node's release and units from status.yml."""
        reports = asyncio.run(status_fleet(self.gateways()))
        summary = run_playbook("status.yml", inventory=self.inventory, extravars={},
                               state_dir=self.root, progress=_quiet)
        for report in reports:
            result = summary.result(report.node, STATUS_TASK)
            if result is None:
                failure = next((r for r in summary.results.get(report.node, [])
                                if r.status in {"failed", "unreachable"}), None)
                report.extra["ssh"] = failure.message if failure else "no answer"
                continue
            node = result.facts.get("triptyque_node_status", {})
            report.extra.update(release=node.get("current", ""), previous=node.get("previous", ""),
                                units=parse_units(node.get("units", "")))
        self._pull_reports(reports)
        return reports

    def _pull_reports(self, reports: list[NodeReport]) -> None:
        """A pull node's last report (release, health, when): what is known of a site offline now."""
        pulled = {n.name for n in self.nodes() if n.mode == "pull"}
        if not pulled:
            return
        published = pull.current_publication(self.root)
        last = pull.reports(self.root)
        for report in reports:
            if report.node in pulled:
                report.extra["pull"] = pull.report_summary(last.get(report.node), published, time.time())

    def _record_fleet_state(self, engaged: bool, operator: str, reason: str,
                            reports: list[NodeReport], *, hard: bool = False) -> None:
        """Pull nodes offline now obey the decision when they reconnect (edge.pull)."""
        if not any(n.mode == "pull" for n in self.nodes()):
            return
        if not engaged and any(r.reachable and r.engaged for r in reports):
            return  # a resume still waiting for its second approver (two-person rule)
        state = pull.record_kill_state(self.root, engaged=engaged, operator=operator, reason=reason,
                                       hard=hard)
        for report in reports:
            report.extra["fleet_kill_seq"] = state["seq"]

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        reports = asyncio.run(admin_fleet(self.gateways(), self.admin_key(), "kill", operator, reason))
        hard = hard and self.spec.kill_switch.stop_engine_on_hard_kill
        self._record_fleet_state(True, operator, reason, reports, hard=hard)
        if hard:
            self._set_engines("stopped", reports, _quiet)
            (self.root / "hard-kill.json").write_text(json.dumps(
                {"operator": operator, "reason": reason, "at": time.time(),
                 "nodes": [r.node for r in reports]}))
        return reports

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        marker = self.root / "hard-kill.json"
        started: list[NodeReport] = []
        if marker.exists():
            (progress or _quiet)("the engines were stopped (hard kill): starting them again")
            started = [NodeReport(e.name, e.url, reachable=True) for e in self.gateways()]
            self._set_engines("started", started, progress or _quiet)
        reports = asyncio.run(admin_fleet(self.gateways(), self.admin_key(), "resume",
                                          operator, reason))
        for report, engine in zip(reports, started, strict=False):
            report.extra.update(engine.extra)
        self._record_fleet_state(False, operator, reason, reports)
        if marker.exists() and all(r.extra.get("engine_started", True) for r in started):
            marker.unlink()
        return reports

    def _set_engines(self, state: str, reports: list[NodeReport], progress: Progress) -> None:
        """Run engine.yml; note per node whether systemd reached ``state`` and how long it took."""
        summary = run_playbook(
            "engine.yml", inventory=self.inventory, state_dir=self.root, progress=progress,
            extravars={"triptyque_engine_state": state,
                       "triptyque_engine_port": self.spec.engine.port})
        key = "engine_stopped" if state == "stopped" else "engine_started"
        for report in reports:
            result = summary.result(report.node, ENGINE_TASK)
            done = result is not None and result.status in {"ok", "changed"}
            failure = [r for r in summary.results.get(report.node, [])
                       if r.status in {"failed", "unreachable"}]
            report.extra[key] = done and not failure
            report.extra[f"{key}_seconds"] = round(result.seconds, 3) if result else None
            if failure:
                report.extra[f"{key}_error"] = failure[-1].message


def parse_units(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show`` output for several units -> {unit id: {property: value}}."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props.pop("Id")] = props
    return units
