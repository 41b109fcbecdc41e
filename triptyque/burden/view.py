"""The report's view model: what the page shows, arranged once from a Comparison.

Nothing here prices anything: every number comes from ``compare`` and ``decision``; this
module only picks, orders and formats them (thousands separators, units, badges) for the
templates in ``templates/`` (``report.py`` renders them). Text is kept as plain text: the
HTML template escapes it, so nothing a scenario file says can become markup. Charts are
drawn by ``charts.py`` (inline SVG, every text in it escaped there).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from triptyque.burden.charts import Bar, Row, Segment, line_chart, stacked_bars, tornado, volume_chart
from triptyque.burden.compare import TARGETS, Comparison, DrillView
from triptyque.burden.drills import DEPLOY_PHASES
from triptyque.burden.figures import Figure

if TYPE_CHECKING:
    from pathlib import Path

RECOVERY = (("kill-soft", "time_to_refuse_all_seconds", "kill: all refuse"),
            ("kill-hard", "time_to_serve_again_seconds", "hard kill: serving again"),
            ("engine-crash", "time_to_restore_seconds", "engine crash: restored"),
            ("redeploy", "outage_seconds", "re-deploy: outage"),
            ("node-reboot", "time_to_serve_again_seconds", "node reboot: serving again"))
CSV_TABLES = ("summary", "decision", "tco_lines", "drills", "static_burden", "exit_cost", "scorecard", "figures",
              "dependencies", "people", "staffing", "staffing_levels", "continuity", "provenance")
DECISION_HEADERS = ["option", "low", "point (economic TCO)", "high", "cheaper than the API from",
                    "moves it most (swing low-high)"]
SIDE_HEADERS = ["scenario", "option", "economic TCO", "range", "cheapest", "cheaper than the API from", "report"]

Table = tuple[list[str], list[list[str]]]


def eur(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} EUR"


def _view_badges(view: DrillView) -> list[str]:
    return ["measured"] if view.measured else ["modelled", *(["estimate"] if view.estimate else [])]


# ---- chart rows --------------------------------------------------------------------------------


def phase_rows(c: Comparison) -> list[Row]:
    rows = []
    for target in TARGETS:
        view = c.drills[target].get("deploy")
        if view is None or not view.phases:
            continue
        segments = [Segment(p, view.phases[p]["seconds"], f"{view.phases[p].get('source', '')} ({view.source})")
                    for p in DEPLOY_PHASES if p in view.phases]
        rows.append(Row(target, segments, modelled=not view.measured))
    return rows


def recovery_rows(c: Comparison) -> list[Row]:
    rows = []
    for target in TARGETS:
        for drill, metric, label in RECOVERY:
            view = c.drills[target].get(drill)
            if view is not None and metric in view.metrics:
                rows.append(Row(f"{target}: {label}", [Segment(label, view.metrics[metric], view.source)],
                                modelled=not view.measured))
    return rows


def fte_rows(c: Comparison) -> list[Row]:
    return [Row(option, [Segment(role, fte, "estimate from the static burden and burden.* figures")
                         for role, fte in cost.fte.items()], modelled=True)
            for option, cost in c.costs.items()]


def exit_rows(c: Comparison) -> list[Row]:
    return [Row(f"{option} -> {e.destination}", [Segment(line.name, line.eur, line.formula) for line in e.lines],
                modelled=True) for option, e in c.exits.items()]


def charts(c: Comparison) -> dict[str, str]:
    """Every chart of the page as inline SVG, by name."""
    months = c.scenario.horizon_months
    return {
        "tco": line_chart("tco", f"TCO accumulated over {months} months (cash: capex in month 1, then monthly costs)",
                          {o: cost.cumulative_cash() for o, cost in c.costs.items()}, "EUR",
                          dashed={o for o, cost in c.costs.items() if cost.estimate}),
        "phases": stacked_bars("phases", "Time to serve: deploy phases up to the first token",
                               phase_rows(c), "s"),
        "recovery": stacked_bars("recovery", "Recovery times (log scale)", recovery_rows(c), "s", log=True),
        "fte": stacked_bars("fte", "People: FTE per role (estimate)", fte_rows(c), "FTE"),
        "exit": stacked_bars("exit", "Exit cost at the end of the horizon", exit_rows(c), "EUR"),
        **decision_charts(c),
    }


def decision_charts(c: Comparison) -> dict[str, str]:
    d = c.decision
    if d is None:
        return {}
    s = c.scenario
    out = {"break-even": volume_chart(
        "break-even", f"Total cost over {s.horizon_months} months by token volume, against the managed API",
        {str(o): v for o, v in d.curves.items()}, marker=s.traffic.input_tokens_per_month
        + s.traffic.output_tokens_per_month, flips={str(o): v for o, v in d.break_even.items()})}
    for option, found in d.sensitivity.items():
        bars = [Bar(w.figure, w.total_at_low, w.total_at_high,
                    f"{w.figure}: {w.low_value:,.4g} -> {w.total_at_low:,.0f} EUR; {w.high_value:,.4g} -> "
                    f"{w.total_at_high:,.0f} EUR")
                for w in [w for w in found if w.width >= 0.5][:6] if math.isfinite(w.total_at_low + w.total_at_high)]
        if bars:
            out[f"tornado-{option}"] = tornado(f"tornado-{option}", f"{option}: what moves the total most",
                                               d.ranges[option].point, bars, "EUR")
    return out


# ---- plain-text tables (Markdown, CSV, JSON; some shown as they are in the HTML) -------------------


def origin(f: Figure) -> str:
    if not f.overridden:
        return "default"
    was = f" (default {f.default_value:,.4g})" if f.default_value is not None else ""
    return f"user override{was}" + (", unsourced" if f.unsourced else "")


def provenance_rows(c: Comparison) -> list[list[str]]:
    p = c.provenance
    rows = [["triptyque version", str(p.get("version", "?"))], ["git revision", c.git_revision],
            ["spec hash", str(p.get("spec_hash") or "n/a (no spec given)")]]
    rows += [[f"{kind} file", f"{v['path']} sha256 {v['sha256']}"] for kind, v in p.get("inputs", {}).items()]
    return rows


def decision_rows(c: Comparison) -> list[list[str]]:
    d = c.decision
    if d is None:
        return []
    rows = []
    for option, r in d.ranges.items():
        flip = d.break_even.get(option)
        swings = ", ".join(f"{w.figure} ({w.width:,.0f} EUR)"
                           for w in [w for w in d.sensitivity.get(option, []) if w.width >= 0.5][:3])
        rows.append([option, eur(r.low), eur(r.point), eur(r.high),
                     "n/a" if option not in d.break_even else
                     ("never (1/1000 to 10,000 x this volume)" if flip is None else f"{flip:,.0f} tokens/month"),
                     swings])
    return rows


def tables(c: Comparison) -> dict[str, Table]:
    """Every table of the report as plain text cells: the Markdown and the CSV files are written from these."""
    s = c.scenario
    weights = list(next(iter(c.scorecards.values())).weights) if c.scorecards else []
    return {
        "summary": (
            ["option", f"TCO {s.horizon_months} m (cash)", "TCO (economic)", "per M tokens", "FTE", "exit cost",
             "scorecard", "basis"],
            [[o, eur(cost.tco_cash), eur(cost.tco_economic),
              "n/a" if cost.cost_per_million_tokens is None else f"{cost.cost_per_million_tokens:,.3f} EUR",
              f"{sum(cost.fte.values()):.2f}", eur(c.exits[o].total_eur), f"{c.scorecards[o].total:.2f}",
              "modelled" + (", estimate" if cost.estimate else "")] for o, cost in c.costs.items()]
            + [[o, "not priced", "", "", "", "", "", reason] for o, reason in c.unserved.items()]),
        "decision": (DECISION_HEADERS, decision_rows(c)),
        "tco_lines": (
            ["option", "line", "upfront", "monthly", "formula", "figures"],
            [[o, i.name, eur(i.upfront), eur(i.monthly), i.formula,
              ", ".join(i.figures) + (" (estimate)" if i.estimate else "")
              + (f" (measured: {i.measured})" if i.measured else "")]
             for o, cost in c.costs.items() for i in cost.items]),
        "drills": (
            ["target", "drill", "basis", "phases (s)", "metrics", "human steps", "source"],
            [[t, n, "measured" if v.measured else "modelled" + (", estimate" if v.estimate else ""),
              ", ".join(f"{p} +{d['seconds']:.2f}" for p, d in v.phases.items()),
              ", ".join(f"{k} {val:,.3f}" for k, val in v.metrics.items()), str(v.human_steps), v.source]
             for t in TARGETS for n, v in c.drills[t].items()]),
        "static_burden": (
            ["target", "components", "dependencies", "pinned", "manual steps", "specific / portable",
             "FTE (estimate)", "not counted"],
            [[t, str(v["counts"]["components"]), str(v["counts"]["dependencies"]),
              str(v["counts"]["pinned_versions"]), str(v["counts"]["manual_steps"]),
              f'{v["counts"]["provider_specific_resources"]} / {v["counts"]["portable_resources"]}',
              ", ".join(f"{r} {x:.2f}" for r, x in v["fte"].items()), "; ".join(v["missing"]) or "-"]
             for t, v in c.burden_views.items()]),
        "exit_cost": (
            ["leaving", "porting h", "deploy on destination", "moved out", "total", "lines"],
            [[f"{o} -> {e.destination}", f"{e.porting_hours:.1f}",
              "n/a" if e.redeploy is None else f"{e.redeploy.value:.1f} s ({e.redeploy.label}: {e.redeploy.source})",
              f"{e.egress_gb:,.1f} GB", eur(e.total_eur), "; ".join(f"{x.name} {eur(x.eur)}" for x in e.lines)]
             for o, e in c.exits.items()]),
        "scorecard": (
            ["option", *weights, "weighted"],
            [[o, *(f"{sc.score:.2f}" for sc in card.scores.values()), f"{card.total:.2f}"]
             for o, card in c.scorecards.items()]),
        "figures": (
            ["figure", "value", "unit", "source", "date", "confidence", "origin"],
            [[f.id, f"{f.value:,.4g}", f.unit, f.source, f.date, f.confidence, origin(f)]
             for f in c.figures.used_figures()]),
        "dependencies": (
            ["option", "dependency", "what", "vendor", "jurisdiction", "licence", "replaceable", "evidence"],
            [[o, d.name, d.what, d.vendor, d.jurisdiction, d.licence, d.replaceable, d.evidence]
             for o, ds in c.dependencies.items() for d in ds]),
        "people": (
            ["option", "skill domain", "FTE low", "FTE", "FTE high", "what drives it"],
            [[o, domain, f"{low:.2f}", f"{mid:.2f}", f"{high:.2f}", "; ".join(view["drivers"])]
             for o, view in c.people.items() for domain, (low, mid, high) in view["fte"].items()]),
        "staffing": (
            ["option", "skill domain", "level", "FTE band", "bottom-up estimate", "FTE used (before 24/7 on-call)",
             "the source note's passage (section: quote)", "public references"],
            staffing_rows(c)),
        "staffing_levels": (
            ["level", "FTE", "how", "figures"],
            [[level, f"{b['low']:.2f}-{b['high']:.2f} {b['unit']}", b["formula"], ", ".join(b["figures"])]
             for level, b in c.staffing.get("levels", {}).items()]),
        "continuity": (
            ["option", "availability as deployed", "SLO", "meets it", "single points of failure",
             "with one spare", "one spare costs", "formula"],
            [[o, "n/a" if k.availability is None else f"{k.availability:.4%}", f"{k.slo:.2%}",
              "unknown" if k.meets is None else "yes" if k.meets else "no", "; ".join(k.single_points),
              "n/a" if k.with_spare is None else f"{k.with_spare:.6%}", eur(k.spare_eur), k.formula]
             for o, k in c.continuity.items()]),
        "provenance": (["what", "value"], provenance_rows(c)),
    }


def staffing_rows(c: Comparison) -> list[list[str]]:
    """The source documents' level behind each option's FTE per domain, with the passage and what it did."""
    rows = []
    for option, found in c.staffing.get("per_option", {}).items():
        for role, b in found["bands"].items():
            estimate = found["raised_from"].get(role)
            rows.append([option, b["domain"], b["level"], f"{b['low']:.2f}-{b['high']:.2f} FTE ({b['formula']})",
                         "at or above the band" if estimate is None else f"{estimate:.2f} FTE, raised to the band",
                         f"{found['point'][role]:.2f}",
                         f"{b['section']}: {b['quote']}" + (f" Our reading: {b['reading']}." if b["reading"] else ""),
                         " ".join(b["references"])])
    return rows


def csv_text(headers: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()


# ---- the rows the HTML shows with more than plain text ------------------------------------------------


@dataclass(frozen=True)
class SummaryRow:
    option: str
    cash: str
    economic: str
    per_million: str
    fte: str
    exit: str
    scorecard: str
    estimate: bool


@dataclass(frozen=True)
class LineRow:
    name: str
    upfront: str
    monthly: str
    total: str
    formula: str
    figures: str
    measured: bool
    estimate: bool


@dataclass(frozen=True)
class OptionLines:
    option: str
    sizing: str
    residual: str
    horizon_months: int
    lines: list[LineRow]
    notes: list[str]


@dataclass(frozen=True)
class DrillRow:
    target: str
    drill: str
    badges: list[str]
    phases: str
    metrics: str
    human_steps: str
    commands: str
    source: str
    ledger_id: int | None


@dataclass(frozen=True)
class LedgerRow:
    id: int
    recorded: str
    target: str
    drill: str
    outcome: str
    git: str
    spec: str
    error: str


@dataclass(frozen=True)
class BurdenRow:
    target: str
    counts: list[str]
    specific_portable: str
    skills: str
    fte: str
    missing: list[str]


@dataclass(frozen=True)
class Redeploy:
    value: str
    badge: str
    source: str


@dataclass(frozen=True)
class ExitLineView:
    name: str
    eur: str
    formula: str


@dataclass(frozen=True)
class ExitRow:
    leaving: str
    specific_portable: str
    porting: str
    redeploy: Redeploy | None
    egress: str
    lines: list[ExitLineView]
    total: str
    notes: str


@dataclass(frozen=True)
class ScoreCell:
    score: str
    inputs: list[tuple[str, str]]
    rule: str


@dataclass(frozen=True)
class ScoreRow:
    option: str
    scores: list[ScoreCell]
    total: str


@dataclass(frozen=True)
class FigureRow:
    cells: list[str]
    estimate: bool


@dataclass
class ReportView:
    """Everything the HTML and Markdown templates show, built once by ``build_view``."""

    name: str
    description: str
    generated_at: str
    git_revision: str
    scenario_path: str
    ledger_path: str
    figures_path: str
    horizon_months: int
    traffic: dict[str, str]
    summary_headers: list[str]
    summary: list[SummaryRow]
    unserved: list[tuple[str, str]]
    verdicts: list[str]
    charts: dict[str, str]
    tco: list[OptionLines]
    drills: list[DrillRow]
    ledger: list[LedgerRow]
    burden: list[BurdenRow]
    exits: list[ExitRow]
    score_headers: list[str]
    scores: list[ScoreRow]
    notes: list[str]
    figures: list[FigureRow]
    tables: dict[str, Table]
    csv_links: list[tuple[str, str]] = field(default_factory=list)
    staffing_document: str = ""

    @property
    def tornadoes(self) -> list[str]:
        return [svg for name, svg in self.charts.items() if name.startswith("tornado-")]


def _summary(c: Comparison) -> list[SummaryRow]:
    return [SummaryRow(option, eur(cost.tco_cash), eur(cost.tco_economic),
                       "n/a (no tokens)" if cost.cost_per_million_tokens is None
                       else f"{cost.cost_per_million_tokens:,.3f} EUR",
                       f"{sum(cost.fte.values()):.2f}", eur(c.exits[option].total_eur),
                       f"{c.scorecards[option].total:.2f} / 5", cost.estimate)
            for option, cost in c.costs.items()]


def _tco(c: Comparison) -> list[OptionLines]:
    out = []
    for option, cost in c.costs.items():
        months = cost.horizon_months
        lines = [LineRow(i.name, eur(i.upfront), eur(i.monthly), eur(i.upfront + i.monthly * months), i.formula,
                         ", ".join(i.figures), bool(i.measured), i.estimate) for i in cost.items]
        sizing = ", ".join(f"{k} {v:,.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in cost.sizing.items())
        out.append(OptionLines(option, sizing, eur(cost.residual_book_value), months, lines, list(cost.notes)))
    return out


def _drills(c: Comparison) -> list[DrillRow]:
    return [DrillRow(target, name, _view_badges(v),
                     ", ".join(f"{p} +{d['seconds']:,.2f} s" for p, d in v.phases.items()),
                     ", ".join(f"{k} {x:,.3f}" for k, x in v.metrics.items()), str(v.human_steps),
                     "; ".join(v.commands), v.source, v.entry_id)
            for target in TARGETS for name, v in c.drills[target].items()]


def _ledger(c: Comparison) -> list[LedgerRow]:
    use = c.ledger_use
    if use is None:
        return []
    return [LedgerRow(e.id, f"{e.recorded_at[:19]}Z", e.target, e.name, e.outcome, e.git_revision[:16],
                      e.spec_hash or "-", str(e.details.get("error", "")))
            for e in sorted({e.id: e for e in [*use.used, *use.failed]}.values(), key=lambda e: e.id)]


def _burden(c: Comparison) -> list[BurdenRow]:
    rows = []
    for target, view in c.burden_views.items():
        counts = view["counts"]
        rows.append(BurdenRow(
            target, [str(counts[k]) for k in ("components", "dependencies", "pinned_versions", "manual_steps")],
            f'{counts["provider_specific_resources"]} / {counts["portable_resources"]}',
            "; ".join(f"{d}: {', '.join(s)}" for d, s in view["skills"].items()),
            ", ".join(f"{r} {v:.2f}" for r, v in view["fte"].items()), list(view["missing"])))
    return rows


def _exits(c: Comparison) -> list[ExitRow]:
    return [ExitRow(f"{option} -> {e.destination}", f"{e.provider_specific} / {e.portable}",
                    f"{e.porting_hours:,.1f} h",
                    None if e.redeploy is None else Redeploy(f"{e.redeploy.value:,.1f} s",
                                                             e.redeploy.label.split(",")[0], e.redeploy.source),
                    f"{e.egress_gb:,.1f} GB", [ExitLineView(x.name, eur(x.eur), x.formula) for x in e.lines],
                    eur(e.total_eur), " ".join(e.notes))
            for option, e in c.exits.items()]


def _scores(c: Comparison) -> tuple[list[str], list[ScoreRow]]:
    weights = next(iter(c.scorecards.values())).weights if c.scorecards else {}
    headers = ["option", *(f"{d} (weight {w:.2f})" for d, w in weights.items()), "weighted"]
    rows = [ScoreRow(option, [ScoreCell(f"{s.score:.2f}", list(s.inputs.items()), s.rule)
                              for s in card.scores.values()], f"{card.total:.2f}")
            for option, card in c.scorecards.items()]
    return headers, rows


def build_view(c: Comparison) -> ReportView:
    """The one view model both templates render."""
    s = c.scenario
    drawn = charts(c)  # first: the tables below list every figure used so far
    every = tables(c)
    score_headers, scores = _scores(c)
    traffic = {"input": f"{s.traffic.input_tokens_per_month:,}", "output": f"{s.traffic.output_tokens_per_month:,}",
               "peak": str(s.traffic.peak_concurrency), "hours_per_day": f"{s.service.hours_per_day:g}",
               "days_per_month": f"{s.service.days_per_month:g}", "gpu_type": s.gpu_type, "sites": str(s.edge.sites)}
    return ReportView(
        name=s.name, description=s.description, generated_at=c.generated_at, git_revision=c.git_revision,
        scenario_path=c.scenario_path, ledger_path=c.ledger_path, figures_path=c.figures_path,
        horizon_months=s.horizon_months, traffic=traffic,
        summary_headers=["option", f"TCO {s.horizon_months} m (cash)", "TCO (economic)",
                         "per million tokens (reservation-based)", "FTE", "exit cost", "scorecard", ""],
        summary=_summary(c), unserved=list(c.unserved.items()),
        verdicts=list(c.decision.verdict) if c.decision else [], charts=drawn, tco=_tco(c), drills=_drills(c),
        ledger=_ledger(c), burden=_burden(c), exits=_exits(c), score_headers=score_headers, scores=scores,
        notes=list(c.notes),
        figures=[FigureRow([f.id, f"{f.value:,.4g}", f.unit, f.source, f.date, f.confidence, origin(f)],
                           f.is_estimate) for f in c.figures.used_figures()],
        tables=every,
        csv_links=[(name, "data:text/csv;charset=utf-8," + quote(csv_text(*table))) for name, table in every.items()],
        staffing_document=str(c.staffing.get("document", "")))


# ---- several scenarios side by side --------------------------------------------------------------------


def side_by_side_rows(comparisons: list[tuple[Comparison, dict[str, Path]]]) -> list[list[str]]:
    rows = []
    for c, written in comparisons:
        d = c.decision
        cheapest = min(c.costs, key=lambda o: c.costs[o].tco_economic)
        for option in ("edge", "onprem", "cloud", "buy"):
            if option in c.costs:
                r = d.ranges[option] if d else None
                flip = d.break_even.get(option) if d else None
                rows.append([c.scenario.name, option, eur(c.costs[option].tco_economic),
                             f"{eur(r.low)} to {eur(r.high)}" if r else "n/a",
                             "yes" if option == cheapest else "",
                             "" if option == "buy" else ("never" if flip is None else f"{flip:,.0f} tokens/month"),
                             written["html"].parent.name + "/report.html"])
            elif option in c.unserved:
                rows.append([c.scenario.name, option, "not priced", c.unserved[option], "", "",
                             written["html"].parent.name + "/report.html"])
    return rows
