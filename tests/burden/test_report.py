"""The comparison report: self-contained HTML opened in a real browser, plus Markdown and JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.browser import check_in_browser
from triptyque.burden.commands import build_report
from triptyque.burden.ledger import Ledger


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report")
    _comparison, paths = build_report(
        scenario_path=ROOT / "burden/scenarios/departmental.yaml", out_dir=out, ledger=Ledger(out / "ledger.sqlite"),
        figures_path=ROOT / "burden/figures.yaml", skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)
    return paths


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
    assert used["cloud.system_node_eur_per_hour"]["estimate"] is True
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
