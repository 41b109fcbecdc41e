"""Scenario files: a bad one fails with one clear line per problem, naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import ROOT
from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figures, load_figures
from triptyque.burden.scenario import load_scenario
from triptyque.cli import app

BAD = """\
name: broken
traffic:
  input_tokens_per_month: -5
  output_tokens_per_month: 1000
service:
  hours_per_day: 30
  days_per_month: 20
gpu_type: B200
gpu_utilisation: 1.5
cloud:
  control_plane: premium
colour: blue
overrides:
  power.onprem.eur_per_kwh: 0.2
  gpu.B200.card_eur: 40000
"""


def problems(path: Path, figures: Figures) -> list[str]:
    with pytest.raises(BurdenError) as caught:
        load_scenario(path, figures)
    return caught.value.problems


def test_every_problem_of_a_bad_scenario_is_one_line_naming_the_file_and_the_field(
    tmp_path: Path, figures: Figures
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    lines = problems(path, figures)
    fields = [line.split(": ")[1] for line in lines]
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert all("\n" not in line for line in lines)
    assert sorted(fields) == sorted([
        "traffic.input_tokens_per_month", "traffic.peak_concurrency", "service.hours_per_day", "gpu_type",
        "gpu_utilisation", "cloud.control_plane", "colour", "overrides.gpu.B200.card_eur", "model"])
    by_field = dict(zip(fields, lines, strict=True))
    assert "greater than or equal to 0" in by_field["traffic.input_tokens_per_month"]
    assert "Field required" in by_field["traffic.peak_concurrency"]
    assert "'L4', 'L40S', 'H100-PCIe' or 'H100-SXM'" in by_field["gpu_type"]
    assert "no such figure" in by_field["overrides.gpu.B200.card_eur"]


@pytest.mark.parametrize(("text", "expected"), [
    ("name: test\ngpu_type: [L4\n", "line 3: invalid YAML"),
    ("- just\n- a list\n", "a scenario must be a YAML mapping, got list"),
])
def test_a_file_that_is_not_a_yaml_mapping_is_one_line(tmp_path: Path, figures: Figures, text: str,
                                                      expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert len(lines := problems(path, figures)) == 1
    assert lines[0].startswith(f"{path}: ") and expected in lines[0]


def test_a_missing_scenario_file_says_which_option_to_pass(tmp_path: Path, figures: Figures) -> None:
    assert problems(tmp_path / "nope.yaml", figures) == [f"{tmp_path / 'nope.yaml'}: file not found "
                                                        "(pass --scenario PATH)"]


def test_listing_edge_without_sites_is_refused(tmp_path: Path, figures: Figures) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("name: e\noptions: [edge, buy]\ntraffic: {input_tokens_per_month: 1, output_tokens_per_month: 1,"
                    " peak_concurrency: 1}\nservice: {hours_per_day: 8, days_per_month: 20}\ngpu_type: L4\n"
                    "model: {name: m, parameters_billion: 1, quantisation: int4, context_tokens: 2048,"
                    " kv_cache_bytes_per_token: 100000, average_sequence_tokens: 512}\n")
    assert problems(path, figures) == [f"{path}: (top level): options lists edge but edge.sites is 0"]


def test_the_shipped_example_scenarios_are_valid(figures: Figures) -> None:
    for path in sorted((ROOT / "burden" / "scenarios").glob("*.yaml")):
        scenario, with_overrides = load_scenario(path, figures)
        assert scenario.name
        for figure_id in scenario.overrides:
            assert with_overrides.items[figure_id].overridden


def test_every_default_figure_has_a_unit_a_source_a_date_and_a_confidence() -> None:
    figures = load_figures(ROOT / "burden" / "figures.yaml")
    assert len(figures.items) > 50
    for figure in figures.items.values():
        assert figure.unit and figure.source and figure.date and figure.confidence in {"H", "M", "L"}


def test_the_compare_command_prints_the_problems_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = CliRunner().invoke(app, ["compare", "--scenario", str(path), "--out", str(tmp_path / "out"),
                                      "--figures", str(ROOT / "burden/figures.yaml"),
                                      "--skills", str(ROOT / "burden/skills.yaml"),
                                      "--spec", str(ROOT / "serving/service.yaml"),
                                      "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 9
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
