"""The comparison report: one self-contained HTML page, plus Markdown and JSON.

``view.build_view`` arranges a Comparison once into a view model; the HTML and the Markdown
are rendered from it by the Jinja2 templates in ``templates/`` (the HTML with autoescaping,
so text from a scenario file never becomes markup), the JSON from the Comparison and the
view's tables. The HTML has no script and loads nothing: charts are inline SVG
(``charts.py``), the style is inline. Measured figures carry the ledger entry they come
from, modelled ones the figure ids behind them; an estimate (a figure of confidence L) is
marked as such.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jinja2

from triptyque.burden.compare import Comparison
from triptyque.burden.view import (
    CSV_TABLES,
    SIDE_HEADERS,
    ReportView,
    Table,
    build_view,
    csv_text,
    side_by_side_rows,
    tables,
)

__all__ = ["CSV_TABLES", "Table", "csv_text", "render_html", "render_markdown", "tables", "write_report",
           "write_side_by_side"]


def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@cache
def environment() -> jinja2.Environment:
    """Templates from the package; HTML ones (``*.html.j2``) autoescaped, Markdown ones not."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("triptyque.burden", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), disabled_extensions=("md.j2",),
                                            default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md_cell"] = md_cell
    return env


def _render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)


def render_html(view: ReportView) -> str:
    return _render("report.html.j2", v=view)


def render_markdown(view: ReportView) -> str:
    return _render("report.md.j2", v=view)


def write_report(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    view = build_view(c)  # draws the charts first, so figures_used below is complete
    paths["html"].write_text(render_html(view), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(view), encoding="utf-8")
    document = c.as_dict() | {"tables": {name: {"headers": h, "rows": r} for name, (h, r) in view.tables.items()}}
    paths["json"].write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    return paths


def write_side_by_side(comparisons: list[tuple[Comparison, dict[str, Path]]], out_dir: Path) -> dict[str, Path]:
    """index.html, index.md and index.json in ``out_dir``: every scenario's options in one table."""
    rows = side_by_side_rows(comparisons)
    paths = {"index html": out_dir / "index.html", "index markdown": out_dir / "index.md",
             "index json": out_dir / "index.json"}
    paths["index html"].write_text(_render("index.html.j2", headers=SIDE_HEADERS, rows=rows), encoding="utf-8")
    paths["index markdown"].write_text(_render("index.md.j2", headers=SIDE_HEADERS, rows=rows), encoding="utf-8")
    paths["index json"].write_text(json.dumps({"scenarios": [
        {"name": c.scenario.name, "path": c.scenario_path, "report": str(w["json"]),
         "tco_economic": {o: cost.tco_economic for o, cost in c.costs.items()}, "unserved": c.unserved}
        for c, w in comparisons]}, indent=2), encoding="utf-8")
    return paths
