"""The comparison report: self-contained HTML opened in a real browser, plus Markdown and JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.browser import check_in_browser
from triptyque.burden.commands import build_report
from triptyque.burden.compare import Comparison
from triptyque.burden.ledger import Ledger


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Comparison, dict[str, Path]]:
    out = tmp_path_factory.mktemp("report")
    return build_report(
        scenario_path=ROOT / "burden/scenarios/departmental.yaml", out_dir=out, ledger=Ledger(out / "ledger.sqlite"),
        figures_path=ROOT / "burden/figures.yaml", skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)


@pytest.fixture(scope="module")
def report(built: tuple[Comparison, dict[str, Path]]) -> dict[str, Path]:
    return built[1]


def test_the_html_report_renders_every_chart_in_a_real_browser_without_errors(
    report: dict[str, Path], tmp_path: Path
) -> None:
    check_in_browser(report["html"], tmp_path / "report.png")


def test_the_html_report_loads_nothing_from_the_network(report: dict[str, Path]) -> None:
    html = report["html"].read_text()
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)


def test_modelled_figures_are_marked_and_name_their_sources(report: dict[str, Path]) -> None:
    data = json.loads(report["json"].read_text())
    cloud_deploy = data["drills"]["cloud"]["deploy"]
    assert cloud_deploy["measured"] is False
    assert cloud_deploy["source"].startswith("figures: k8s.cluster_ready_s")
    assert all(not view["measured"] for views in data["drills"].values() for view in views.values())
    used = {f["id"]: f for f in data["figures_used"]}
    assert used["gpu.L40S.card_eur"]["source"].startswith("geizhals.de")
    assert used["cloud.block_storage_eur_per_gb_month"]["estimate"] is True
    html = report["html"].read_text()
    assert 'class="bar modelled"' in html and "hatched: modelled (not measured)" in html
    assert "No local drill in the ledger" in html


def test_the_markdown_report_has_the_same_options_and_sections(report: dict[str, Path]) -> None:
    markdown = report["markdown"].read_text()
    for heading in ("## Summary", "## TCO line items", "## Drills", "## Static burden", "## Exit cost",
                    "## Scorecard", "## Figures used"):
        assert heading in markdown
    for option in ("| edge |", "| onprem |", "| cloud |", "| buy |"):
        assert option in markdown


def test_the_scorecard_shows_its_inputs_and_uses_the_scenarios_weights(report: dict[str, Path]) -> None:
    data = json.loads(report["json"].read_text())
    card = data["scorecard"]["cloud"]
    assert card["weights"] == pytest.approx({"value": 2 / 7, "risk": 1 / 7, "dependency": 1 / 7, "data": 2 / 7,
                                             "run": 1 / 7})
    for score in card["scores"].values():
        assert 1 <= score["score"] <= 5 and score["inputs"] and score["rule"]
    assert card["total"] == pytest.approx(sum(card["scores"][d]["score"] * w for d, w in card["weights"].items()))


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_reads_at_desktop_and_phone_width_with_no_text_out_of_its_box(
    report: dict[str, Path], tmp_path: Path, width: int
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM_ARGS, chromium

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report["html"].as_uri(), wait_until="load")
            seen = page.evaluate("""() => {
                const page = document.documentElement.scrollWidth;
                const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
                    const box = svg.getBoundingClientRect();
                    const out = [...svg.querySelectorAll('text')].filter(t => {
                        const r = t.getBoundingClientRect();
                        return r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1 ||
                                               r.top < box.top - 1 || r.bottom > box.bottom + 1);
                    }).map(t => t.textContent);
                    return {name: svg.dataset.chart, width: box.width, out};
                });
                return {page, charts};
            }""")
            page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert seen["page"] <= width, "the page scrolls sideways"  # wide tables scroll inside their own box
    assert len(seen["charts"]) >= 9
    for chart in seen["charts"]:
        assert 0 < chart["width"] <= width and chart["out"] == [], chart
    assert (tmp_path / f"report-{width}.png").stat().st_size > 10_000


def test_text_from_a_scenario_file_never_becomes_markup(built: tuple[Comparison, dict[str, Path]]) -> None:
    from dataclasses import replace

    from triptyque.burden.report import render_html, render_markdown
    from triptyque.burden.view import build_view

    comparison, _paths = built
    hostile = '<img src=x onerror="alert(1)"> & <script>alert(2)</script>'
    view = build_view(comparison)
    view = replace(view, name=hostile, description=hostile, notes=[*view.notes, hostile],
                   unserved=[("edge", hostile)], verdicts=[hostile])
    html = render_html(view)
    assert "<img" not in html and "<script" not in html
    assert html.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; &lt;script&gt;") == 6  # title, h1, 4 texts
    markdown = render_markdown(view)  # Markdown keeps the text as it is; a "|" in a table cell is escaped
    assert f"# What each option really costs to run: {hostile}" in markdown and f"- {hostile}" in markdown


def test_the_page_and_the_markdown_come_from_one_view_model_and_templates(
    built: tuple[Comparison, dict[str, Path]]
) -> None:
    import ast
    import inspect
    import tomllib

    from triptyque.burden import report, view

    comparison, paths = built
    model = view.build_view(comparison)
    assert report.render_markdown(model) == paths["markdown"].read_text()
    assert set(model.tables) == set(view.CSV_TABLES)
    # The view arranges what compare and decision computed: it never imports the cost model (nor the ledger or
    # the probe; from the drills only the names of the deploy phases, in their order).
    imported = {node.module for node in ast.walk(ast.parse(inspect.getsource(view)))
                if isinstance(node, ast.ImportFrom) and node.module}
    pricing = {"triptyque.burden." + m for m in ("tco", "decision", "sizing", "deployed", "exit", "scorecard", "slo",
                                                  "units", "inputs", "ledger", "probe")}
    assert not imported & pricing, imported & pricing
    # No markup is written in Python: the renderer has no HTML tags; the templates ship as package data.
    assert "<td" not in inspect.getsource(report) and "<td" not in inspect.getsource(view)
    templates = Path(report.__file__).parent / "templates"
    assert {"report.html.j2", "report.md.j2", "index.html.j2", "index.md.j2"} <= {p.name for p in templates.iterdir()}
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "**/*.j2" in config["tool"]["setuptools"]["package-data"]["triptyque"]
