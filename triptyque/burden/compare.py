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

from triptyque import __version__
from triptyque.burden import decision, staffing
from triptyque.burden import tco as tco_model
from triptyque.burden.dependencies import Dependency, dependency_map, load_dependencies
from triptyque.burden.deployed import CloudDeployment, read_cloud_deployment
from triptyque.burden.edge_scale import SCALE_FILE, EdgeScale, load_scale
from triptyque.burden.errors import BurdenError
from triptyque.burden.evidence import Evidence
from triptyque.burden.exit import DESTINATION, ExitCost, exit_cost
from triptyque.burden.figures import Figures
from triptyque.burden.ledger import Entry, Ledger, git_revision
from triptyque.burden.modelled import ModelledDrill, edge_crash_proxy, kubernetes_drills
from triptyque.burden.scenario import Option, Scenario, model_class_mismatch
from triptyque.burden.scorecard import Scorecard, scorecard
from triptyque.burden.slo import Continuity, continuity
from triptyque.burden.static import Skills, TargetBurden, scan
from triptyque.burden.tco import TOIL, OptionCost, Unserved
from triptyque.burden.upgrades import Upgrades, upgrades

TARGETS = ("local", "edge", "onprem", "cloud")
DEPENDENCIES = Path("burden/dependencies.yaml")
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
    entry_id: int | None = None

    def evidence(self, metric: str) -> Evidence | None:
        if metric not in self.metrics:
            return None
        return Evidence(self.metrics[metric], self.measured, self.source, self.estimate)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "drill": self.drill, "measured": self.measured, "source": self.source,
                "phases": self.phases, "metrics": self.metrics, "human_steps": self.human_steps,
                "commands": self.commands, "notes": self.notes, "estimate": self.estimate, "ledger_id": self.entry_id}


def _measured(entry: Entry) -> DrillView:
    return DrillView(entry.target, entry.name, True, entry.ref, entry.phases, entry.metrics,
                     int(entry.details.get("human_steps", 0)), list(entry.details.get("commands", [])),
                     list(entry.details.get("notes", [])), entry_id=entry.id)


def _modelled(drill: ModelledDrill, figures: Figures) -> DrillView:
    estimate = any(figures.figure(i).is_estimate for i in drill.figures)
    source = "figures: " + ", ".join(drill.figures) if drill.figures else "; ".join(drill.notes)
    return DrillView(drill.target, drill.drill, False, source, drill.phases, drill.metrics, drill.human_steps,
                     [], drill.notes, estimate or not drill.figures)


@dataclass
class LedgerUse:
    """Which ledger rows the report used, which failed, and how many were left out as another revision's."""

    used: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)
    other_revision_or_spec: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"used": [e.id for e in self.used], "failed": [{"id": e.id, "target": e.target, "drill": e.name,
                                                                "error": e.details.get("error"), "ref": e.ref}
                                                               for e in self.failed],
                "left_out_other_revision_or_spec": self.other_revision_or_spec}


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
    unserved: dict[Option, str] = field(default_factory=dict)
    deployment: CloudDeployment | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    decision: decision.Decision | None = None
    ledger_use: LedgerUse | None = None
    dependencies: dict[Option, list[Dependency]] = field(default_factory=dict)
    continuity: dict[Option, Continuity] = field(default_factory=dict)

    people: dict[Option, dict[str, Any]] = field(default_factory=dict)
    staffing: dict[str, Any] = field(default_factory=dict)
    fleet: dict[str, Any] = field(default_factory=dict)

    @property
    def figures_path(self) -> str:
        return str(self.provenance.get("inputs", {}).get("figures", {}).get("path", "the figures file"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at, "git_revision": self.git_revision,
            "provenance": self.provenance,
            "scenario_path": self.scenario_path, "scenario": self.scenario.model_dump(mode="json"),
            "ledger": self.ledger_path,
            "cloud_deployment": self.deployment.as_dict() if self.deployment else None,
            "unserved": self.unserved,
            "decision": self.decision.as_dict() if self.decision else None,
            "dependencies": {o: [d.as_dict() for d in ds] for o, ds in self.dependencies.items()},
            "continuity": {o: c.as_dict() for o, c in self.continuity.items()},
            "people": self.people,
            "staffing": self.staffing,
            "edge_fleet": self.fleet,
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


def collect_drills(ledger: Ledger, figures: Figures, root: Path, *, spec_hash: str | None = None,
                   revision: str | None = None, use: LedgerUse | None = None) -> dict[str, dict[str, DrillView]]:
    """Measured drills of this spec hash and revision (failed runs listed, never hidden); modelled ones."""
    use = use if use is not None else LedgerUse()
    drills: dict[str, dict[str, DrillView]] = {t: {} for t in TARGETS}
    for target in ("local", "edge"):
        for name in MEASURED_DRILLS:
            every = ledger.entries(target=target, kind="drill", name=name)
            matching = ledger.matching(target, "drill", name, spec_hash=spec_hash, revision=revision)
            use.other_revision_or_spec += len(every) - len(matching)
            use.failed += [e for e in matching if e.outcome != "ok"]
            entry = ledger.latest(target, "drill", name, spec_hash=spec_hash, revision=revision)
            if entry is not None:
                drills[target][name] = _measured(entry)
                use.used.append(entry)
    for target in ("onprem", "cloud"):
        operator = _stack_flag(root, target, "gpuOperator", target == "onprem")
        for drill in kubernetes_drills(target, figures, gpu_operator=operator):
            drills[target][drill.drill] = _modelled(drill, figures)
    if "engine-crash" not in drills["edge"] and (start := _local_engine_start(drills["local"])) is not None:
        drills["edge"]["engine-crash"] = _modelled(edge_crash_proxy(_restart_sec(root), *start), figures)
    return drills


def outside_eu_or_closed(d: Dependency) -> bool:
    return "EU" not in d.jurisdiction or "proprietary" in d.licence


def lens_verdicts(s: Scenario, costs: dict[Option, OptionCost], exits: dict[Option, ExitCost],
                  depends: dict[Option, list[Dependency]]) -> list[str]:
    """One plain line per lens beyond cost and SLO: dependency, exit, people."""
    lines = []
    priced = [o for o in costs if o in depends]
    if priced:
        counts = {o: sum(outside_eu_or_closed(d) for d in depends[o]) for o in priced}
        best = min(priced, key=lambda o: counts[o])
        lines.append(f"Dependency: {best} has the fewest dependencies outside the EU or under a proprietary "
                     f"licence ({counts[best]}; " + ", ".join(f"{o} {n}" for o, n in counts.items() if o != best)
                     + "); see whom each option depends on.")
    if exits:
        cheapest = min(exits, key=lambda o: exits[o].total_eur)
        dearest = max(exits, key=lambda o: exits[o].total_eur)
        lines.append(f"Exit: leaving {cheapest} costs least ({exits[cheapest].total_eur:,.0f} EUR), leaving {dearest} "
                     f"most ({exits[dearest].total_eur:,.0f} EUR, of which stranded hardware "
                     f"{exits[dearest].by_line().get('stranded hardware', 0.0):,.0f} EUR).")
    if costs:
        fte = {o: sum(c.fte.values()) for o, c in costs.items()}
        fits = [o for o, v in fte.items() if v <= s.people.fte_available]
        lightest = min(fte, key=lambda o: fte[o])
        lines.append(f"People: {lightest} needs the fewest FTE ({fte[lightest]:.2f}); with "
                     f"{s.people.fte_available:g} FTE available, "
                     + (f"{', '.join(fits)} fit" if fits else "no option fits") + ".")
    return lines


DOMAIN = {"sre": "infra and ops", "mlops": "AI-specific", "support": "user support and integration"}


def people_view(s: Scenario, figures: Figures, costs: dict[Option, OptionCost],
                bounded: dict[Option, staffing.Bounded] | None = None,
                upkeep: dict[Option, Upgrades | None] | None = None) -> dict[Option, dict[str, Any]]:
    """FTE per skill domain of each option as a range, the source documents' level behind it, what drives it.

    With ``bounded`` (``staffing.bound``), each domain's range is the documents' band widened by the
    drivers; without, the estimate's own +-35 % (hours figures of confidence L). A figure the scenario
    gives (people.fte) or measured toil is shown as it is."""
    spread = decision.SPREAD["L"]
    out: dict[Option, dict[str, Any]] = {}
    for option, cost in costs.items():
        exact = option in s.people.fte
        b = (bounded or {}).get(option)
        oncall = figures.value("people.oncall_24x7_fte") if s.people.on_call_24x7 and option != "buy" else 0.0
        domains = {}
        for role, fte in cost.fte.items():
            if role.startswith(TOIL):
                domains[f"infra and ops, measured ({role.removeprefix(TOIL)})"] = [fte, fte, fte]
                continue
            if exact:
                domains[DOMAIN.get(role, role)] = [fte, fte, fte]
            elif b is not None and role in b.point:
                extra = oncall if role == "sre" else 0.0
                domains[DOMAIN.get(role, role)] = [b.low[role] + extra, fte, b.high[role] + extra]
            else:
                domains[DOMAIN.get(role, role)] = [fte * (1 - spread), fte, fte * (1 + spread)]
        drivers = tco_model.scale_drivers(option, s, figures)
        found = (upkeep or {}).get(option)
        if found is not None:
            drivers.insert(0, found.text())
        levels = {}
        if b is not None and not exact:
            drivers += staffing.describe(option, b)
            levels = {DOMAIN.get(r, r): band.as_dict() for r, band in b.bands.items()}
        out[option] = {"fte": domains, "drivers": drivers, "levels": levels,
                       "upgrades": found.as_dict() if found is not None else None}
    return out


def measured_toil(drills: dict[str, dict[str, DrillView]], figures: Figures) -> dict[str, dict[str, float]]:
    """FTE a measured edge upgrade drill takes a year: its duration x ``ops.upgrades_per_year``, as a ``toil:`` key
    naming its ledger entry (only measured drills count; an edge upgrade is a rollout the SRE runs and watches)."""
    found = upgrades("edge", figures, ledger=ledger_upgrade(drills))
    toil = found.toil(figures.value("people.hours_per_fte_year")) if found is not None else {}
    return {"edge": toil} if toil else {}


def ledger_upgrade(drills: dict[str, dict[str, DrillView]]) -> tuple[float, str] | None:
    """A measured edge upgrade drill: seconds from its start to its last phase, and its ledger ref."""
    view = drills.get("edge", {}).get("upgrade")
    if view is None or not view.measured or not view.phases:
        return None
    return max(float(p.get("at", 0.0)) for p in view.phases.values()), view.source


def fleet_size(option: Option, s: Scenario, figures: Figures, deployment: CloudDeployment) -> tuple[int, int]:
    """(edge nodes, engine replicas) the scenario needs on ``option``; (0, 0) when it cannot serve the model."""
    if option not in s.compared:
        return 0, 0
    try:
        cost = tco_model.price(option, s, Figures(dict(figures.items)), {}, deployment)
    except Unserved:
        return 0, 0
    return int(cost.sizing.get("devices", 0)), int(cost.sizing.get("replicas", 0))


def fleet_view(scale: EdgeScale | None, nodes: int, scale_path: str) -> dict[str, Any]:
    """The edge scale model's times for the scenario's fleet, each measured or modelled with its error."""
    if scale is None:
        return {"scale_file": None, "nodes": nodes,
                "note": f"No edge scale model ({scale_path}): edge operating times use today's figures "
                        "(edge.sre_hours_per_site_year for rollouts, the measured or modelled drills for the rest); "
                        "run the edge scale bench to write it."}
    operations: dict[str, Any] = {}
    for operation in ("converge", "idempotent", "upgrade", "kill", "resume"):
        try:
            p = scale.predict(operation, nodes)
        except (KeyError, ValueError):
            continue
        operations[operation] = {"seconds": p.seconds, "low": p.low, "high": p.high, "kind": p.kind,
                                 "relative_error": p.relative_error, "text": scale.describe(operation, nodes)}
    return {"scale_file": scale.citation, "nodes": nodes, "operations": operations}


def fleet_kill(scale: EdgeScale | None, drills: dict[str, dict[str, DrillView]],
               nodes: int) -> tuple[float, str] | None:
    """How long the kill switch takes to reach every edge node: the scale model's ``kill`` for the scenario's
    fleet (measured at that size or modelled with its error), else the measured kill drill on its own fleet."""
    if scale is not None and nodes:
        try:
            p = scale.predict("kill", nodes)
        except (KeyError, ValueError):
            p = None
        if p is not None:
            return p.seconds, scale.describe("kill", nodes)
    soft = drills.get("edge", {}).get("kill-soft")
    if soft is not None and soft.measured and "time_to_refuse_all_seconds" in soft.metrics:
        seconds = soft.metrics["time_to_refuse_all_seconds"]
        return seconds, f"{seconds:,.1f} s measured on the fleet the drill ran on ({soft.source}); no scale model"
    return None


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
    spec_version: str | None, rendered: Path | None = None, provenance: dict[str, Any] | None = None,
    deployment: CloudDeployment | None = None, dependencies_path: Path | None = None,
    staffing_path: Path | None = None, scale_path: Path | None = None,
) -> Comparison:
    burdens = scan(root, spec_version=spec_version, rendered=rendered)
    deployment = deployment or read_cloud_deployment(root)
    self_run: tuple[Option, ...] = ("edge", "onprem", "cloud")
    extra: dict[str, dict[str, float]] = {o: tco_model.scale_hours(o, scenario, figures) for o in self_run}
    revision = git_revision(root)
    ledger_use = LedgerUse()
    drills = collect_drills(ledger, figures, root, spec_hash=(provenance or {}).get("spec_hash"),
                            revision=revision, use=ledger_use)
    scale_file = scale_path or root / SCALE_FILE
    scale = load_scale(scale_file, str(SCALE_FILE) if scale_path is None else scale_file.name)
    sizes = {o: fleet_size(o, scenario, figures, deployment) for o in self_run}
    upkeep: dict[Option, Upgrades | None] = {
        o: upgrades(o, figures, nodes=sizes[o][0], replicas=sizes[o][1], scale=scale,
                    ledger=ledger_upgrade(drills) if o == "edge" else None) for o in self_run}
    per_fte = figures.value("people.hours_per_fte_year")
    fte: dict[str, dict[str, float]] = {}
    for option in self_run:
        found = upkeep[option]
        if found is not None:
            extra[option]["sre"] = extra[option].get("sre", 0.0) + found.estimate_hours
        fte[option] = burdens[option].fte(skills, figures, extra[option]) | (found.toil(per_fte) if found else {})
    fte["buy"] = {"mlops": figures.value("buy.fte")}
    mapping = staffing.load_staffing(staffing_path or root / staffing.STAFFING_FILE)
    bounded = {o: staffing.bound(o, fte[o], mapping, figures, scenario.edge.sites) for o in (*self_run, "buy")}
    for option, b in bounded.items():
        fte[option] = b.point
    fleet = fleet_view(scale, sizes["edge"][0], str(SCALE_FILE))
    unserved: dict[Option, str] = {}
    costs = tco_model.compute(scenario, figures, fte, deployment, unserved)
    if not costs:
        raise BurdenError([f"{scenario_path}: model: no option can serve {scenario.model.name}: "
                           + "; ".join(f"{o}: {r}" for o, r in unserved.items())])
    views = {t: b.as_dict(skills, figures, extra.get(t)) for t, b in burdens.items()}

    exits: dict[Option, ExitCost] = {}
    for option, cost in costs.items():
        destination = DESTINATION[option]
        deploy = drills.get(destination, {}).get("deploy")
        burden = burdens.get(option)
        exits[option] = exit_cost(
            option, scenario, figures, tco=cost, counts=burden.counts() if burden else None,
            redeploy=deploy.evidence("time_to_serve_seconds") if deploy else None,
            partial=bool(burden and burden.missing),
            destination_counts=burdens[destination].counts() if destination in burdens else None)

    per_m = [c.cost_per_million_tokens for c in costs.values() if c.cost_per_million_tokens is not None]
    cheapest = min(per_m) if per_m else min(c.tco_economic for c in costs.values())
    scale_out = drills["cloud"].get("scale-out")
    sla = ("99.5 % SLA (Kapsule Dedicated)" if scenario.cloud.control_plane == "dedicated"
           else "no SLA (Kapsule shared)")
    slos = {o: continuity(o, scenario, figures, cost, slo=deployment.slo_availability,
                          cloud_repair_seconds=scale_out.metrics.get("time_to_serve_seconds") if scale_out else None,
                          cloud_control_plane_sla=sla, fleet_kill=fleet_kill(scale, drills, sizes["edge"][0]))
            for o, cost in costs.items()}
    known = {f"{d}.{name}" for d, domain in skills.domains.items() for name in domain["skills"]}
    unknown = sorted(set(scenario.people.skills or []) - known)
    if unknown:
        raise BurdenError([f"{scenario_path}: people.skills: unknown skill {name!r}; use ids of the skills file "
                           f"(e.g. {', '.join(sorted(known)[:3])})" for name in unknown])
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
            skills=sum(len(v) for v in views[option]["skills"].values()) if option in views else 0,
            rota_people=figures.value("people.oncall_rota_min_people") if scenario.people.on_call_24x7 else None,
            needed_skills=sorted({k for i in burden.items for k in skills.skills_of(i.tags)}) if burden else [],
            slo_fit=slos[option].meets)

    notes = [f"{option}: cannot serve {scenario.model.name}, so it is not priced: {reason}"
             for option, reason in unserved.items()]
    mismatch = model_class_mismatch(scenario, figures)
    if mismatch is not None:
        notes.insert(0, mismatch)
    for target, burden in burdens.items():
        notes += [f"{target}: {line}" for line in burden.missing]
    if ledger_use.other_revision_or_spec:
        notes.append(f"{ledger_use.other_revision_or_spec} drill entries of the ledger were recorded at another git "
                     "revision or spec hash and are not used: run the drills again at this revision.")
    notes += [f"Failed drill in the ledger: {e.target} {e.name}, {e.ref}: {e.details.get('error', 'no error kept')}"
              for e in ledger_use.failed]
    if not drills["local"]:
        notes.append(f"No local drill in the ledger ({ledger.path}): run `triptyque drill local all`.")
    if not any(v.measured for v in drills["edge"].values()):
        notes.append("No edge drill in the ledger: edge figures are modelled; run "
                     "`triptyque drill edge all --inventory FILE` against a fleet.")
    if "edge" in costs:
        if scale is None:
            notes.append(fleet["note"])
        else:
            notes += [f"edge fleet of {fleet['nodes']} node(s), {name}: {op['text']}."
                      for name, op in fleet["operations"].items()]
    notes.append("onprem and cloud drills are modelled from sourced figures: no Kubernetes cluster is "
                 "reachable here.")
    for option, cost in costs.items():
        util = cost.sizing.get("utilisation")
        implied = cost.sizing.get("implied_utilisation")
        if scenario.gpu_utilisation is not None and util and implied is not None and (
                implied == 0 or not 0.5 <= util / implied <= 2):
            notes.append(f"{option}: the stated GPU utilisation ({util:.1%}) differs from what the traffic implies "
                         f"({implied:.1%}); power uses the stated one.")
    people = {o: tco_model.people_fte(scenario, figures, o, fte.get(o)) for o in scenario.compared}
    people_bounds = {o: (tco_model.people_fte(scenario, figures, o, bounded[o].low),
                         tco_model.people_fte(scenario, figures, o, bounded[o].high))
                     for o in scenario.compared if o in bounded}
    verdict = decision.decide(scenario, figures, people, deployment, costs, people_bounds)
    if verdict is not None:
        meets = [o for o, c in slos.items() if c.meets]
        misses = [o for o, c in slos.items() if c.meets is False]
        verdict.verdict.append(
            f"SLO {deployment.slo_availability:.1%}: met as deployed by {', '.join(meets) or 'none'}"
            + (f"; not by {', '.join(misses)} without a spare" if misses else "") + ".")
    depends = dependency_map(load_dependencies(dependencies_path or root / DEPENDENCIES), scenario,
                             list(scenario.compared), dict(burdens))
    if verdict is not None:
        verdict.verdict += lens_verdicts(scenario, costs, exits, depends)
    return Comparison(
        datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), revision,
        str(scenario_path), scenario, costs, burdens, views, drills, exits, cards, figures, str(ledger.path), notes,
        unserved, deployment, {"version": __version__, **(provenance or {}), "ledger": ledger_use.as_dict()},
        verdict, ledger_use, depends, slos, people_view(scenario, figures, costs, bounded, upkeep),
        {"document": mapping.document, "levels": staffing.level_bands(figures, scenario.edge.sites),
         "per_option": {o: b.as_dict() for o, b in bounded.items() if o in costs}},
        fleet)
