"""The comparison report: one self-contained HTML page, plus Markdown and JSON.

The HTML has no script and loads nothing: charts are inline SVG (``charts.py``), the
style is inline. Measured figures carry the ledger entry they come from, modelled ones
the figure ids behind them; an estimate (a figure of confidence L) is marked as such.
"""

from __future__ import annotations

import csv
import io
import json
import math
from html import escape
from pathlib import Path
from urllib.parse import quote

from triptyque.burden.charts import Bar, Row, Segment, line_chart, stacked_bars, tornado, volume_chart
from triptyque.burden.compare import TARGETS, Comparison, DrillView
from triptyque.burden.drills import DEPLOY_PHASES
from triptyque.burden.figures import Figure

RECOVERY = (("kill-soft", "time_to_refuse_all_seconds", "kill: all refuse"),
            ("kill-hard", "time_to_serve_again_seconds", "hard kill: serving again"),
            ("engine-crash", "time_to_restore_seconds", "engine crash: restored"),
            ("redeploy", "outage_seconds", "re-deploy: outage"),
            ("node-reboot", "time_to_serve_again_seconds", "node reboot: serving again"))
CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;border-radius:3px;padding:0 .35rem;font-size:.75rem;font-weight:600}
.measured{background:#d8f0dc;color:#1d5e2a}.modelled{background:#e4e8f5;color:#2a3d7a}
.estimate{background:#fbe7c6;color:#7a4b00}.missing{background:#f8d7da;color:#842029}
.small{color:#555;font-size:.85rem}svg.chart{display:block;margin:.8rem 0;max-width:100%;height:auto}
code{background:#f4f4f4;padding:0 .2rem}
.scroll{overflow-x:auto;max-width:100%}p,li,h1,h2,h3{overflow-wrap:anywhere}
@media (max-width:600px){body{margin:.6rem}table{font-size:.8rem}}
"""


def _eur(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} EUR"


def _badge(kind: str) -> str:
    return f'<span class="badge {kind}">{escape(kind)}</span>'


def _view_badges(view: DrillView) -> str:
    return _badge("measured") if view.measured else _badge("modelled") + (" " + _badge("estimate")
                                                                          if view.estimate else "")


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


# ---- HTML ------------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _summary(c: Comparison) -> str:
    rows = []
    for option, cost in c.costs.items():
        per_m = cost.cost_per_million_tokens
        rows.append([escape(option), _eur(cost.tco_cash), _eur(cost.tco_economic),
                     "n/a (no tokens)" if per_m is None else f"{per_m:,.3f} EUR",
                     f"{sum(cost.fte.values()):.2f}", _eur(c.exits[option].total_eur),
                     f"{c.scorecards[option].total:.2f} / 5",
                     _badge("modelled") + (" " + _badge("estimate") if cost.estimate else "")])
    return _table(["option", f"TCO {c.scenario.horizon_months} m (cash)", "TCO (economic)",
                   "per million tokens (reservation-based)", "FTE", "exit cost", "scorecard", ""],
                  rows, {1, 2, 3, 4, 5, 6})


def _tco_details(c: Comparison) -> str:
    parts = []
    for option, cost in c.costs.items():
        rows = [[escape(i.name), _eur(i.upfront), _eur(i.monthly), _eur(i.upfront + i.monthly * cost.horizon_months),
                 f"<code>{escape(i.formula)}</code>", escape(", ".join(i.figures)),
                 (_badge("measured") + " " if i.measured else "") + (_badge("estimate") if i.estimate else "")]
                for i in cost.items]
        sizing = ", ".join(f"{k} {v:,.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in cost.sizing.items())
        parts.append(f"<h3>{escape(option)}</h3><p class=small>sizing: {escape(sizing)}; residual book value at "
                     f"month {cost.horizon_months}: {_eur(cost.residual_book_value)}</p>"
                     + _table(["line", "upfront", "monthly", f"{cost.horizon_months} months", "formula", "figures", ""],
                              rows, {1, 2, 3})
                     + "".join(f"<p class=small>{escape(n)}</p>" for n in cost.notes))
    return "".join(parts)


def _drill_table(c: Comparison) -> str:
    rows = []
    for target in TARGETS:
        for name, view in c.drills[target].items():
            metrics = ", ".join(f"{k} {v:,.3f}" for k, v in view.metrics.items())
            phases = ", ".join(f"{p} +{d['seconds']:,.2f} s" for p, d in view.phases.items())
            source = (f'<a href="#ledger-{view.entry_id}">{escape(view.source)}</a>' if view.entry_id is not None
                      else escape(view.source))
            rows.append([escape(target), escape(name), _view_badges(view), escape(phases), escape(metrics),
                         str(view.human_steps), escape("; ".join(view.commands)), source])
    return _table(["target", "drill", "", "phases", "metrics", "human steps", "commands", "source"], rows)


def _ledger_table(c: Comparison) -> str:
    use = c.ledger_use
    if use is None or not (use.used or use.failed):
        return "<p class=small>No ledger entry of this git revision and spec hash was used.</p>"
    rows = [f'<tr id="ledger-{e.id}"><td>#{e.id}</td><td>{escape(e.recorded_at[:19])}Z</td><td>{escape(e.target)}</td>'
            f"<td>{escape(e.name)}</td><td>{escape(e.outcome)}</td><td>{escape(e.git_revision[:16])}</td>"
            f"<td>{escape(e.spec_hash or '-')}</td><td>{escape(str(e.details.get('error', '')))}</td></tr>"
            for e in sorted({e.id: e for e in [*use.used, *use.failed]}.values(), key=lambda e: e.id)]
    head = "".join(f"<th>{h}</th>" for h in ("#", "recorded", "target", "drill", "outcome", "git", "spec", "error"))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _burden_table(c: Comparison) -> str:
    rows = []
    for target, view in c.burden_views.items():
        counts = view["counts"]
        missing = "".join(f'<div>{_badge("missing")} {escape(m)}</div>' for m in view["missing"])
        skills = "; ".join(f"{d}: {', '.join(s)}" for d, s in view["skills"].items())
        fte = ", ".join(f"{r} {v:.2f}" for r, v in view["fte"].items())
        rows.append([escape(target), str(counts["components"]), str(counts["dependencies"]),
                     str(counts["pinned_versions"]), str(counts["manual_steps"]),
                     f'{counts["provider_specific_resources"]} / {counts["portable_resources"]}',
                     escape(skills), escape(fte) + " " + _badge("estimate"), missing])
    return _table(["target", "components", "dependencies", "pinned versions", "manual steps (runbook)",
                   "provider-specific / portable resources", "skills", "FTE", "not counted"], rows, {1, 2, 3, 4})


def _exit_table(c: Comparison) -> str:
    rows = []
    for option, e in c.exits.items():
        redeploy = ("n/a" if e.redeploy is None else
                    f"{e.redeploy.value:,.1f} s {_badge(e.redeploy.label.split(',')[0])} {escape(e.redeploy.source)}")
        lines = "<br>".join(f"{escape(line.name)}: {_eur(line.eur)} <code>{escape(line.formula)}</code>"
                            for line in e.lines)
        rows.append([escape(f"{option} -> {e.destination}"), f"{e.provider_specific} / {e.portable}",
                     f"{e.porting_hours:,.1f} h", redeploy, f"{e.egress_gb:,.1f} GB", lines, _eur(e.total_eur),
                     escape(" ".join(e.notes))])
    return _table(["leaving", "provider-specific / portable", "porting", "deploy on the destination", "to move out",
                   "lines", "total", "notes"], rows, {6})


def _scorecard_table(c: Comparison) -> str:
    weights = next(iter(c.scorecards.values())).weights if c.scorecards else {}
    rows = []
    for option, card in c.scorecards.items():
        cells = [escape(option)]
        for score in card.scores.values():
            inputs = "<br>".join(f"{escape(k)}: {escape(v)}" for k, v in score.inputs.items())
            cells.append(f"<b>{score.score:.2f}</b><div class=small>{inputs}<br><i>{escape(score.rule)}</i></div>")
        cells.append(f"<b>{card.total:.2f}</b>")
        rows.append(cells)
    head = ["option", *(f"{d} (weight {w:.2f})" for d, w in weights.items()), "weighted"]
    return _table(head, rows)


def _origin(f: Figure) -> str:
    if not f.overridden:
        return "default"
    was = f" (default {f.default_value:,.4g})" if f.default_value is not None else ""
    return f"user override{was}" + (", unsourced" if f.unsourced else "")


def _figures_table(c: Comparison) -> str:
    rows = [[escape(f.id), f"{f.value:,.4g}", escape(f.unit), escape(f.source), escape(f.date), escape(f.confidence),
             escape(_origin(f)) + (" " + _badge("estimate") if f.is_estimate else "")]
            for f in c.figures.used_figures()]
    return _table(["figure", "value", "unit", "source", "date", "confidence", "origin"], rows, {1})


def _provenance_rows(c: Comparison) -> list[list[str]]:
    p = c.provenance
    rows = [["triptyque version", str(p.get("version", "?"))], ["git revision", c.git_revision],
            ["spec hash", str(p.get("spec_hash") or "n/a (no spec given)")]]
    rows += [[f"{kind} file", f"{v['path']} sha256 {v['sha256']}"] for kind, v in p.get("inputs", {}).items()]
    return rows


def _decision_rows(c: Comparison) -> list[list[str]]:
    d = c.decision
    if d is None:
        return []
    rows = []
    for option, r in d.ranges.items():
        flip = d.break_even.get(option)
        swings = ", ".join(f"{w.figure} ({w.width:,.0f} EUR)"
                           for w in [w for w in d.sensitivity.get(option, []) if w.width >= 0.5][:3])
        rows.append([option, _eur(r.low), _eur(r.point), _eur(r.high),
                     "n/a" if option not in d.break_even else
                     ("never (1/1000 to 10,000 x this volume)" if flip is None else f"{flip:,.0f} tokens/month"),
                     swings])
    return rows


CSV_TABLES = ("summary", "decision", "tco_lines", "drills", "static_burden", "exit_cost", "scorecard", "figures",
              "dependencies", "people", "continuity", "provenance")
DECISION_HEADERS = ["option", "low", "point (economic TCO)", "high", "cheaper than the API from",
                    "moves it most (swing low-high)"]


def render_html(c: Comparison) -> str:
    chart = charts(c)
    s = c.scenario
    notes = "".join(f"<li>{escape(n)}</li>" for n in c.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>triptyque: {escape(s.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>What each option really costs to run: {escape(s.name)}</h1>
<p class=small>{escape(s.description)}<br>Generated {escape(c.generated_at)} from git {escape(c.git_revision[:16])},
scenario <code>{escape(c.scenario_path)}</code>, ledger <code>{escape(c.ledger_path)}</code>.
{_badge("measured")} = run on a real deployment, with its ledger entry; {_badge("modelled")} = computed from the
sourced figures of <code>{escape(c.figures_path)}</code>; {_badge("estimate")} = uses a figure of low confidence.</p>
<h2>Summary</h2>{_summary(c)}
{"".join(f'<p>{_badge("missing")} {escape(o)} is not priced: {escape(r)}</p>' for o, r in c.unserved.items())}
<h2>What decides</h2><ul>{"".join(f"<li>{escape(v)}</li>" for v in (c.decision.verdict if c.decision else []))}</ul>
{_table(DECISION_HEADERS, [[escape(x) for x in row] for row in _decision_rows(c)], {1, 2, 3, 4})}
{chart.get("break-even", "")}{"".join(v for k, v in chart.items() if k.startswith("tornado-"))}
<p class=small>Ranges: each figure at its low and high value from its confidence (H +-5 %, M +-15 %, L +-35 %),
one at a time; the range adds every change in the same direction.</p>
<h2>TCO over {s.horizon_months} months</h2>{chart["tco"]}
<p class=small>Traffic {s.traffic.input_tokens_per_month:,} input + {s.traffic.output_tokens_per_month:,} output tokens
a month, peak {s.traffic.peak_concurrency} concurrent, {s.service.hours_per_day:g} h x {s.service.days_per_month:g}
days, GPU {escape(s.gpu_type)}, {s.edge.sites} edge site(s). Cost per million tokens is reservation-based: the
economic TCO (capex over its depreciation life) divided by the tokens served.</p>
{_tco_details(c)}
<h2>Time to serve</h2>{chart["phases"]}
<h2>Recovery</h2>{chart["recovery"]}
<p class=small>Human reaction time is not included in measured recoveries that need a human step: add your
on-call response time.</p>
<h3>Every drill</h3>{_drill_table(c)}
<h3>Ledger rows used (this git revision and spec hash; failed runs included)</h3>{_ledger_table(c)}
<h2>Static burden and people</h2>{chart["fte"]}{_burden_table(c)}
<h3>FTE per skill domain, as a range, and what drives it</h3>
{_table(tables(c)["people"][0], [[escape(x) for x in row] for row in tables(c)["people"][1]], {2, 3, 4})}
<h2>Exit cost</h2>{chart["exit"]}{_exit_table(c)}
<h2>SLO and continuity, as deployed</h2>
{_table(tables(c)["continuity"][0], [[escape(x) for x in row] for row in tables(c)["continuity"][1]])}
<h2>Whom each option depends on</h2>
{_table(tables(c)["dependencies"][0], [[escape(x) for x in row] for row in tables(c)["dependencies"][1]])}
<h2>Scorecard</h2><p class=small>Weights from the scenario (<code>weights:</code>), normalised; edit them there.</p>
{_scorecard_table(c)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Figures used</h2>{_figures_table(c)}
<h2>Provenance</h2>{_table(["what", "value"], [[escape(a), escape(b)] for a, b in _provenance_rows(c)])}
<p class=small>Every table as CSV (downloads from this page): {csv_links(c)}</p>
</body></html>
"""


# ---- Markdown -----------------------------------------------------------------------------------------


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


Table = tuple[list[str], list[list[str]]]


def tables(c: Comparison) -> dict[str, Table]:
    """Every table of the report as plain text cells: the Markdown and the CSV files are written from these."""
    s = c.scenario
    weights = list(next(iter(c.scorecards.values())).weights) if c.scorecards else []
    return {
        "summary": (
            ["option", f"TCO {s.horizon_months} m (cash)", "TCO (economic)", "per M tokens", "FTE", "exit cost",
             "scorecard", "basis"],
            [[o, _eur(cost.tco_cash), _eur(cost.tco_economic),
              "n/a" if cost.cost_per_million_tokens is None else f"{cost.cost_per_million_tokens:,.3f} EUR",
              f"{sum(cost.fte.values()):.2f}", _eur(c.exits[o].total_eur), f"{c.scorecards[o].total:.2f}",
              "modelled" + (", estimate" if cost.estimate else "")] for o, cost in c.costs.items()]
            + [[o, "not priced", "", "", "", "", "", reason] for o, reason in c.unserved.items()]),
        "decision": (DECISION_HEADERS, _decision_rows(c)),
        "tco_lines": (
            ["option", "line", "upfront", "monthly", "formula", "figures"],
            [[o, i.name, _eur(i.upfront), _eur(i.monthly), i.formula,
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
              f"{e.egress_gb:,.1f} GB", _eur(e.total_eur), "; ".join(f"{x.name} {_eur(x.eur)}" for x in e.lines)]
             for o, e in c.exits.items()]),
        "scorecard": (
            ["option", *weights, "weighted"],
            [[o, *(f"{sc.score:.2f}" for sc in card.scores.values()), f"{card.total:.2f}"]
             for o, card in c.scorecards.items()]),
        "figures": (
            ["figure", "value", "unit", "source", "date", "confidence", "origin"],
            [[f.id, f"{f.value:,.4g}", f.unit, f.source, f.date, f.confidence, _origin(f)]
             for f in c.figures.used_figures()]),
        "dependencies": (
            ["option", "dependency", "what", "vendor", "jurisdiction", "licence", "replaceable", "evidence"],
            [[o, d.name, d.what, d.vendor, d.jurisdiction, d.licence, d.replaceable, d.evidence]
             for o, ds in c.dependencies.items() for d in ds]),
        "people": (
            ["option", "skill domain", "FTE low", "FTE", "FTE high", "what drives it"],
            [[o, domain, f"{low:.2f}", f"{mid:.2f}", f"{high:.2f}", "; ".join(view["drivers"])]
             for o, view in c.people.items() for domain, (low, mid, high) in view["fte"].items()]),
        "continuity": (
            ["option", "availability as deployed", "SLO", "meets it", "single points of failure",
             "with one spare", "one spare costs", "formula"],
            [[o, "n/a" if k.availability is None else f"{k.availability:.4%}", f"{k.slo:.2%}",
              "unknown" if k.meets is None else "yes" if k.meets else "no", "; ".join(k.single_points),
              "n/a" if k.with_spare is None else f"{k.with_spare:.6%}", _eur(k.spare_eur), k.formula]
             for o, k in c.continuity.items()]),
        "provenance": (["what", "value"], _provenance_rows(c)),
    }


def render_markdown(c: Comparison) -> str:
    s = c.scenario
    t = tables(c)
    out = [f"# What each option really costs to run: {s.name}", "",
           f"Generated {c.generated_at} from git `{c.git_revision[:16]}`, scenario `{c.scenario_path}`, "
           f"ledger `{c.ledger_path}`. **measured** = run on a real deployment (ledger entry given); "
           f"**modelled** = computed from `{c.figures_path}`; **estimate** = uses a low-confidence figure.", "",
           "## Summary", "", _md_table(*t["summary"])]
    out += ["", *(f"- **{o} is not priced**: {r}" for o, r in c.unserved.items())]
    out += ["", "## What decides", "", *(f"- {v}" for v in (c.decision.verdict if c.decision else [])), "",
            _md_table(*t["decision"])]
    out += ["", "## TCO line items", "", _md_table(*t["tco_lines"]), ""]
    out += ["## Drills", "", _md_table(*t["drills"]), ""]
    out += ["## Static burden", "", _md_table(*t["static_burden"]), ""]
    out += ["### FTE per skill domain, as a range", "", _md_table(*t["people"]), ""]
    out += ["## Exit cost", "", _md_table(*t["exit_cost"]), ""]
    out += ["## SLO and continuity, as deployed", "", _md_table(*t["continuity"]), ""]
    out += ["## Whom each option depends on", "", _md_table(*t["dependencies"]), ""]
    out += ["## Scorecard", "", _md_table(*t["scorecard"]), ""]
    out += ["## Notes", "", *(f"- {n}" for n in c.notes), "", "## Figures used", "", _md_table(*t["figures"]), ""]
    out += ["## Provenance", "", _md_table(*t["provenance"]), "",
            "Every table as CSV: the download links of report.html; the same tables are under `tables` in "
            "report.json.", ""]
    return "\n".join(out)


def csv_text(headers: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_links(c: Comparison) -> str:
    """Every table as a CSV download inside the page itself (a data: link, so the page stays one file)."""
    return ", ".join(f'<a class="csv" download="{name}.csv" href="data:text/csv;charset=utf-8,'
                     f'{quote(csv_text(*table))}">{name}.csv</a>' for name, table in tables(c).items())


def write_report(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    html = render_html(c)  # renders the charts first, so figures_used below is complete
    paths["html"].write_text(html, encoding="utf-8")
    paths["markdown"].write_text(render_markdown(c), encoding="utf-8")
    document = c.as_dict() | {"tables": {name: {"headers": h, "rows": r} for name, (h, r) in tables(c).items()}}
    paths["json"].write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    return paths


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
                rows.append([c.scenario.name, option, _eur(c.costs[option].tco_economic),
                             f"{_eur(r.low)} to {_eur(r.high)}" if r else "n/a",
                             "yes" if option == cheapest else "",
                             "" if option == "buy" else ("never" if flip is None else f"{flip:,.0f} tokens/month"),
                             written["html"].parent.name + "/report.html"])
            elif option in c.unserved:
                rows.append([c.scenario.name, option, "not priced", c.unserved[option], "", "",
                             written["html"].parent.name + "/report.html"])
    return rows


SIDE_HEADERS = ["scenario", "option", "economic TCO", "range", "cheapest", "cheaper than the API from", "report"]


def write_side_by_side(comparisons: list[tuple[Comparison, dict[str, Path]]], out_dir: Path) -> dict[str, Path]:
    """index.html, index.md and index.json in ``out_dir``: every scenario's options in one table."""
    rows = side_by_side_rows(comparisons)
    paths = {"index html": out_dir / "index.html", "index markdown": out_dir / "index.md",
             "index json": out_dir / "index.json"}
    cells = [[escape(x) if i != 6 else f'<a href="{escape(x)}">{escape(x)}</a>' for i, x in enumerate(row)]
             for row in rows]
    paths["index html"].write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>triptyque: scenarios side by side</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><h1>Scenarios side by side</h1>{_table(SIDE_HEADERS, cells, {2})}</body></html>
""", encoding="utf-8")
    paths["index markdown"].write_text("# Scenarios side by side\n\n" + _md_table(SIDE_HEADERS, rows) + "\n",
                                       encoding="utf-8")
    paths["index json"].write_text(json.dumps({"scenarios": [
        {"name": c.scenario.name, "path": c.scenario_path, "report": str(w["json"]),
         "tco_economic": {o: cost.tco_economic for o, cost in c.costs.items()}, "unserved": c.unserved}
        for c, w in comparisons]}, indent=2), encoding="utf-8")
    return paths
