"""The comparison report: one self-contained HTML page, plus Markdown and JSON.

The HTML has no script and loads nothing: charts are inline SVG (``charts.py``), the
style is inline. Measured figures carry the ledger entry they come from, modelled ones
the figure ids behind them; an estimate (a figure of confidence L) is marked as such.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from triptyque.burden.charts import Row, Segment, line_chart, stacked_bars
from triptyque.burden.compare import TARGETS, Comparison, DrillView
from triptyque.burden.drills import DEPLOY_PHASES

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
    }


# ---- HTML ------------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
                 _badge("estimate") if i.estimate else ""] for i in cost.items]
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
            rows.append([escape(target), escape(name), _view_badges(view), escape(phases), escape(metrics),
                         str(view.human_steps), escape("; ".join(view.commands)), escape(view.source)])
    return _table(["target", "drill", "", "phases", "metrics", "human steps", "commands", "source"], rows)


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


def _figures_table(c: Comparison) -> str:
    rows = [[escape(f.id), f"{f.value:,.4g}", escape(f.unit), escape(f.source), escape(f.date), escape(f.confidence),
             (_badge("estimate") if f.is_estimate else "") + (" overridden" if f.overridden else "")]
            for f in c.figures.used_figures()]
    return _table(["figure", "value", "unit", "source", "date", "confidence", ""], rows, {1})


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
sourced figures of <code>burden/figures.yaml</code>; {_badge("estimate")} = uses a figure of low confidence.</p>
<h2>Summary</h2>{_summary(c)}
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
<h2>Static burden and people</h2>{chart["fte"]}{_burden_table(c)}
<h2>Exit cost</h2>{chart["exit"]}{_exit_table(c)}
<h2>Scorecard</h2><p class=small>Weights from the scenario (<code>weights:</code>), normalised; edit them there.</p>
{_scorecard_table(c)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Figures used</h2>{_figures_table(c)}
</body></html>
"""


# ---- Markdown -----------------------------------------------------------------------------------------


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(c: Comparison) -> str:
    s = c.scenario
    out = [f"# What each option really costs to run: {s.name}", "",
           f"Generated {c.generated_at} from git `{c.git_revision[:16]}`, scenario `{c.scenario_path}`, "
           f"ledger `{c.ledger_path}`. **measured** = run on a real deployment (ledger entry given); "
           "**modelled** = computed from `burden/figures.yaml`; **estimate** = uses a low-confidence figure.", "",
           "## Summary", ""]
    out.append(_md_table(
        ["option", f"TCO {s.horizon_months} m (cash)", "TCO (economic)", "per M tokens", "FTE", "exit cost",
         "scorecard", "basis"],
        [[o, _eur(cost.tco_cash), _eur(cost.tco_economic),
          "n/a" if cost.cost_per_million_tokens is None else f"{cost.cost_per_million_tokens:,.3f} EUR",
          f"{sum(cost.fte.values()):.2f}", _eur(c.exits[o].total_eur), f"{c.scorecards[o].total:.2f}",
          "modelled" + (", estimate" if cost.estimate else "")] for o, cost in c.costs.items()]))
    out += ["", "## TCO line items", ""]
    for option, cost in c.costs.items():
        out += [f"### {option}", "", _md_table(
            ["line", "upfront", "monthly", "formula", "figures"],
            [[i.name, _eur(i.upfront), _eur(i.monthly), f"`{i.formula}`",
              ", ".join(i.figures) + (" (estimate)" if i.estimate else "")] for i in cost.items]), ""]
    out += ["## Drills", "", _md_table(
        ["target", "drill", "basis", "phases (s)", "metrics", "human steps", "source"],
        [[t, n, "measured" if v.measured else "modelled" + (", estimate" if v.estimate else ""),
          ", ".join(f"{p} +{d['seconds']:.2f}" for p, d in v.phases.items()),
          ", ".join(f"{k} {val:,.3f}" for k, val in v.metrics.items()), str(v.human_steps), v.source]
         for t in TARGETS for n, v in c.drills[t].items()]), ""]
    out += ["## Static burden", "", _md_table(
        ["target", "components", "dependencies", "pinned", "manual steps", "specific / portable", "FTE (estimate)",
         "not counted"],
        [[t, str(v["counts"]["components"]), str(v["counts"]["dependencies"]), str(v["counts"]["pinned_versions"]),
          str(v["counts"]["manual_steps"]),
          f'{v["counts"]["provider_specific_resources"]} / {v["counts"]["portable_resources"]}',
          ", ".join(f"{r} {x:.2f}" for r, x in v["fte"].items()), "; ".join(v["missing"]) or "-"]
         for t, v in c.burden_views.items()]), ""]
    out += ["## Exit cost", "", _md_table(
        ["leaving", "porting h", "deploy on destination", "moved out", "total", "lines"],
        [[f"{o} -> {e.destination}", f"{e.porting_hours:.1f}",
          "n/a" if e.redeploy is None else f"{e.redeploy.value:.1f} s ({e.redeploy.label}: {e.redeploy.source})",
          f"{e.egress_gb:,.1f} GB", _eur(e.total_eur), "; ".join(f"{x.name} {_eur(x.eur)}" for x in e.lines)]
         for o, e in c.exits.items()]), ""]
    out += ["## Scorecard", "", _md_table(
        ["option", *c.scorecards[next(iter(c.scorecards))].weights, "weighted"] if c.scorecards else ["option"],
        [[o, *(f"{sc.score:.2f}" for sc in card.scores.values()), f"{card.total:.2f}"]
         for o, card in c.scorecards.items()]), ""]
    out += ["## Notes", "", *(f"- {n}" for n in c.notes), "", "## Figures used", "", _md_table(
        ["figure", "value", "unit", "source", "date", "confidence"],
        [[f.id, f"{f.value:,.4g}", f.unit, f.source, f.date, f.confidence + (" (overridden)" if f.overridden else "")]
         for f in c.figures.used_figures()]), ""]
    return "\n".join(out)


def write_report(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    html = render_html(c)  # renders the charts first, so figures_used below is complete
    paths["html"].write_text(html, encoding="utf-8")
    paths["markdown"].write_text(render_markdown(c), encoding="utf-8")
    paths["json"].write_text(json.dumps(c.as_dict(), indent=2, default=str), encoding="utf-8")
    return paths
