"""The edge target: a fleet of Debian nodes converged by Ansible from an offline bundle.

Layout of the state folder (``.triptyque/edge`` by default)::

    secrets.json     generated API and admin keys (mode 600; only hashes reach the nodes)
    vars.json        the extra vars of the last converge, rendered from the spec
    bundle/          the offline bundle (``triptyque bundle``), unless TRIPTYQUE_BUNDLE names one
    runs/<ident>/    events.jsonl and summary.json of every Ansible run
    runner/          ansible-runner's private folder
    hard-kill.json   which nodes had their engine stopped by ``kill --hard``

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

from triptyque.edge.bundle import (
    Manifest,
    build_for_spec,
    default_cache_dir,
    verify_bundle,
)
from triptyque.edge.inventory import EdgeNode, devices_needed, read_inventory
from triptyque.edge.render import render_vars
from triptyque.edge.runner import RunSummary, ansible_tool, require_success, run_playbook
from triptyque.engine import Device, default_device
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

    def build_bundle(self, progress: Progress, devices: tuple[Device, ...] | None = None) -> Manifest:
        """Build or refresh the bundle in the bundle folder (what ``triptyque bundle`` does)."""
        return build_for_spec(self.spec, self.bundle_dir, devices=devices, progress=progress,
                              cache_dir=self.cache_dir or default_cache_dir())

    def _bundle(self, progress: Progress) -> Manifest:
        if not self.prebuilt_bundle:
            # Every engine build the inventory's nodes run, so a mixed CPU/GPU fleet gets both.
            return self.build_bundle(progress, devices_needed(self.nodes(), default_device(self.spec)))
        manifest = verify_bundle(self.bundle_dir)
        if (manifest.engine_version, manifest.model_served_name) != (
                self.spec.engine.version, self.spec.model.served_name):
            raise TargetError(
                f"the bundle in {self.bundle_dir} holds vLLM {manifest.engine_version} and model "
                f"{manifest.model_served_name}, the spec asks for {self.spec.engine.version} and "
                f"{self.spec.model.served_name}: rebuild it with `triptyque bundle`")
        progress(f"using bundle {manifest.id} from {self.bundle_dir}")
        return manifest

    def extravars(self, manifest: Manifest) -> dict[str, Any]:
        secrets = self.secrets(create=True)
        return render_vars(self.spec, manifest, bundle_dir=self.bundle_dir,
                           api_key_hashes={API_KEY_NAME: hash_key(secrets["api_key"])},
                           admin_key_hashes={ADMIN_KEY_NAME: hash_key(secrets["admin_key"])})

    # ---- up, down --------------------------------------------------------------------------

    def converge(self, progress: Progress, *, check: bool = False, diff: bool = False,
                 extra: dict[str, Any] | None = None) -> RunSummary:
        """Run site.yml once and return its summary, failed or not (``up`` raises instead)."""
        self.nodes()
        manifest = self._bundle(progress)
        rendered = self.extravars(manifest)
        (self.root / "vars.json").write_text(json.dumps(rendered, indent=2) + "\n")
        return run_playbook("site.yml", inventory=self.inventory,
                            extravars={**rendered, **(extra or {})},
                            state_dir=self.root, progress=progress, check=check, diff=diff)

    def up(self, progress: Progress) -> list[Endpoint]:
        nodes = self.nodes()
        progress(f"converging {len(nodes)} edge node(s): {', '.join(n.name for n in nodes)}")
        summary = require_success(self.converge(progress), "the edge rollout (site.yml)")
        progress(f"converged in {summary.seconds:.0f} s, {summary.changed()} change(s); "
                 f"events in {summary.folder}")
        return [Endpoint(f"{node.name} (OpenAI API)", f"{node.gateway_url}/v1") for node in nodes]

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
        return reports

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        reports = asyncio.run(admin_fleet(self.gateways(), self.admin_key(), "kill", operator, reason))
        if hard and self.spec.kill_switch.stop_engine_on_hard_kill:
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
