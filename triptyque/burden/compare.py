"""Put it together: scenario + figures + static burden + ledger -> one Comparison.

Options (edge, onprem, cloud, buy) get a TCO, an exit cost and a scorecard; targets
(local, edge, onprem, cloud) get their static burden and drills, measured where the
ledger has them and modelled otherwise. ``report.py`` only formats this object.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from triptyque.burden import tco as tco_model
from triptyque.burden.evidence import Evidence
from triptyque.burden.exit import DESTINATION, ExitCost, exit_cost
from triptyque.burden.figures import Figures
from triptyque.burden.ledger import Entry, Ledger, git_revision
from triptyque.burden.modelled import ModelledDrill, edge_crash_proxy, kubernetes_drills
from triptyque.burden.scenario import Option, Scenario
from triptyque.burden.scorecard import Scorecard, scorecard
from triptyque.burden.static import Skills, TargetBurden, scan
from triptyque.burden.tco import OptionCost

TARGETS = ("local", "edge", "onprem", "cloud")
MEASURED_DRILLS = ("deploy", "redeploy", "upgrade", "rollback", "kill-soft", "kill-hard", "engine-crash",
                   "node-reboot")


@dataclass
class DrillView:
    """One drill of one target as the report shows it."""

    target: str
    drill: str
    measured: bool
    source: str
    phases: dict[str, dict[str, Any]]
    metrics: dict[str, float]
    human_steps: int
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    estimate: bool = False

    def evidence(self, metric: str) -> Evidence | None:
        if metric not in self.metrics:
            return None
        return Evidence(self.metrics[metric], self.measured, self.source, self.estimate)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "drill": self.drill, "measured": self.measured, "source": self.source,
                "phases": self.phases, "metrics": self.metrics, "human_steps": self.human_steps,
                "commands": self.commands, "notes": self.notes, "estimate": self.estimate}


def _measured(entry: Entry) -> DrillView:
    return DrillView(entry.target, entry.name, True, entry.ref, entry.phases, entry.metrics,
                     int(entry.details.get("human_steps", 0)), list(entry.details.get("commands", [])),
                     list(entry.details.get("notes", [])))


def _modelled(drill: ModelledDrill, figures: Figures) -> DrillView:
    estimate = any(figures.figure(i).is_estimate for i in drill.figures)
    source = "figures: " + ", ".join(drill.figures) if drill.figures else "; ".join(drill.notes)
    return DrillView(drill.target, drill.drill, False, source, drill.phases, drill.metrics, drill.human_steps,
                     [], drill.notes, estimate or not drill.figures)


@dataclass
class Comparison:
    generated_at: str
    git_revision: str
    scenario_path: str
    scenario: Scenario
    costs: dict[Option, OptionCost]
    burdens: dict[str, TargetBurden]
    burden_views: dict[str, dict[str, Any]]
    drills: dict[str, dict[str, DrillView]]
    exits: dict[Option, ExitCost]
    scorecards: dict[Option, Scorecard]
    figures: Figures
    ledger_path: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at, "git_revision": self.git_revision,
            "scenario_path": self.scenario_path, "scenario": self.scenario.model_dump(mode="json"),
            "ledger": self.ledger_path,
            "tco": {o: c.as_dict() for o, c in self.costs.items()},
            "static_burden": self.burden_views,
            "drills": {t: {d: v.as_dict() for d, v in views.items()} for t, views in self.drills.items()},
            "exit_cost": {o: e.as_dict() for o, e in self.exits.items()},
            "scorecard": {o: s.as_dict() for o, s in self.scorecards.items()},
            "figures_used": [f.as_dict() for f in self.figures.used_figures()],
            "notes": self.notes,
        }


def _stack_flag(root: Path, target: str, key: str, default: bool) -> bool:
    try:
        config = yaml.safe_load((root / f"Pulumi.{target}.yaml").read_text())["config"]
        return bool(config.get(f"triptyque:{key}", default))
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return default


def _restart_sec(root: Path) -> float:
    try:
        defaults = yaml.safe_load((root / "playbooks/roles/triptyque/defaults/main.yml").read_text())
        return float(defaults["triptyque_restart_sec"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return 5.0


def collect_drills(ledger: Ledger, figures: Figures, root: Path) -> dict[str, dict[str, DrillView]]:
    drills: dict[str, dict[str, DrillView]] = {t: {} for t in TARGETS}
    for target in ("local", "edge"):
        for name in MEASURED_DRILLS:
            entry = ledger.latest(target, "drill", name)
            if entry is not None:
                drills[target][name] = _measured(entry)
    for target in ("onprem", "cloud"):
        operator = _stack_flag(root, target, "gpuOperator", target == "onprem")
        for drill in kubernetes_drills(target, figures, gpu_operator=operator):
            drills[target][drill.drill] = _modelled(drill, figures)
    if "engine-crash" not in drills["edge"] and (start := _local_engine_start(drills["local"])) is not None:
        drills["edge"]["engine-crash"] = _modelled(edge_crash_proxy(_restart_sec(root), *start), figures)
    return drills


def _local_engine_start(local: dict[str, DrillView]) -> tuple[float, str] | None:
    """How long the engine took to start again on the local target, and the ledger entry saying so."""
    crash = local.get("engine-crash")
    if crash is not None and {"time_to_restore_seconds", "detection_seconds"} <= set(crash.metrics):
        return crash.metrics["time_to_restore_seconds"] - crash.metrics["detection_seconds"], crash.source
    deploy = local.get("deploy")
    if deploy is not None and "ready" in deploy.phases:
        start = deploy.phases.get("infra_ready", {}).get("at", 0.0)
        return deploy.phases["ready"]["at"] - start, deploy.source
    return None


def compare(
    scenario: Scenario, figures: Figures, skills: Skills, *, root: Path, ledger: Ledger, scenario_path: Path,
    spec_version: str | None, rendered: Path | None = None,
) -> Comparison:
    burdens = scan(root, spec_version=spec_version, rendered=rendered)
    self_run: tuple[Option, ...] = ("edge", "onprem", "cloud")
    extra: dict[str, dict[str, float]] = {o: tco_model.scale_hours(o, scenario, figures) for o in self_run}
    fte: dict[str, dict[str, float]] = {o: burdens[o].fte(skills, figures, extra[o]) for o in self_run}
    costs = tco_model.compute(scenario, figures, fte)
    views = {t: b.as_dict(skills, figures, extra.get(t)) for t, b in burdens.items()}
    drills = collect_drills(ledger, figures, root)

    exits: dict[Option, ExitCost] = {}
    for option, cost in costs.items():
        destination = DESTINATION[option]
        deploy = drills.get(destination, {}).get("deploy")
        burden = burdens.get(option)
        exits[option] = exit_cost(
            option, scenario, figures, tco=cost, counts=burden.counts() if burden else None,
            redeploy=deploy.evidence("time_to_serve_seconds") if deploy else None,
            partial=bool(burden and burden.missing))

    per_m = [c.cost_per_million_tokens for c in costs.values() if c.cost_per_million_tokens is not None]
    cheapest = min(per_m) if per_m else min(c.tco_economic for c in costs.values())
    cards: dict[Option, Scorecard] = {}
    for option, cost in costs.items():
        target_drills = drills.get(option, {})
        crash, soft = target_drills.get("engine-crash"), target_drills.get("kill-soft")
        burden = burdens.get(option)
        cards[option] = scorecard(
            option, scenario, cost=cost, cheapest=cheapest,
            restore=crash.evidence("time_to_restore_seconds") if crash else None,
            refuse=soft.evidence("time_to_refuse_all_seconds") if soft else None,
            pinned=burden.counts()["pinned_versions"] if burden else None, exit_cost=exits[option],
            skills=sum(len(v) for v in views[option]["skills"].values()) if option in views else 0)

    notes = []
    for target, burden in burdens.items():
        notes += [f"{target}: {line}" for line in burden.missing]
    if not drills["local"]:
        notes.append(f"No local drill in the ledger ({ledger.path}): run `triptyque drill local all`.")
    if not any(v.measured for v in drills["edge"].values()):
        notes.append("No edge drill in the ledger: edge figures are modelled; run "
                     "`triptyque drill edge all --inventory FILE` against a fleet.")
    notes.append("onprem and cloud drills are modelled from sourced figures: no Kubernetes cluster is "
                 "reachable here.")
    for option, cost in costs.items():
        util = cost.sizing.get("utilisation")
        implied = cost.sizing.get("implied_utilisation")
        if scenario.gpu_utilisation is not None and util and implied is not None and (
                implied == 0 or not 0.5 <= util / implied <= 2):
            notes.append(f"{option}: the stated GPU utilisation ({util:.1%}) differs from what the traffic implies "
                         f"({implied:.1%}); power uses the stated one.")
    return Comparison(
        datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), git_revision(root),
        str(scenario_path), scenario, costs, burdens, views, drills, exits, cards, figures, str(ledger.path), notes)
