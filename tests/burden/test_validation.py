"""Bad inputs are refused through the CLI with one line naming the file and the field, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support import ROOT
from triptyque.burden import units
from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import UNSOURCED, Figures, load_figures
from triptyque.burden.scenario import Scenario
from triptyque.cli import app

from .conftest import scenario

GOOD = """\
name: good
model:
  name: m-7b
  parameters_billion: 7
  quantisation: int4
  context_tokens: 4096
  kv_cache_bytes_per_token: 131072
traffic:
  input_tokens_per_month: 400_000_000
  output_tokens_per_month: 100_000_000
  peak_concurrency: 20
service:
  hours_per_day: 10
  days_per_month: 20
gpu_type: L40S
"""
FIGURES = (ROOT / "burden/figures.yaml").read_text()


def compare(tmp_path: Path, text: str, figures_text: str = FIGURES) -> tuple[int, list[str], str]:
    scenario_path, figures_path = tmp_path / "scenario.yaml", tmp_path / "figures.yaml"
    scenario_path.write_text(text)
    figures_path.write_text(figures_text)
    result = CliRunner().invoke(app, ["compare", "--scenario", str(scenario_path), "--out", str(tmp_path / "out"),
                                      "--figures", str(figures_path), "--skills", str(ROOT / "burden/skills.yaml"),
                                      "--spec", str(ROOT / "serving/service.yaml"),
                                      "--state-dir", str(tmp_path / "state")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    return result.exit_code, errors, result.output


@pytest.mark.parametrize(("change", "field", "says"), [
    (GOOD + "overrides: {onprem.rack_units: 0}\n", "overrides.onprem.rack_units",
     "0 is out of range for U/rack (valid: 1 to 60)"),
    (GOOD + "overrides: {people.hours_per_fte_year: 0}\n", "overrides.people.hours_per_fte_year",
     "0 is out of range for h/FTE/year"),
    (GOOD + "overrides: {power.onprem.eur_per_kwh: -0.2}\n", "overrides.power.onprem.eur_per_kwh",
     "-0.2 is out of range for EUR/kWh"),
    (GOOD + "overrides: {onprem.pue: 7}\n", "overrides.onprem.pue", "7 is out of range for PUE (valid: 1 to 3)"),
    (GOOD + "overrides: {gpu.L40S.card_eur: {value: 1, source: ../shared/reference/tco-anchors.md}}\n",
     "overrides.gpu.L40S.card_eur.source", "names a local file"),
    (GOOD.replace("400_000_000", "4e8"), "traffic.input_tokens_per_month",
     "YAML reads '4e8' as text, not a number: write 400_000_000"),
    (GOOD.replace("400_000_000", "4.0e+8"), "traffic.input_tokens_per_month", "write 400_000_000"),
    (GOOD.replace("peak_concurrency: 20", "peak_concurrency: true"), "traffic.peak_concurrency",
     "Input should be a valid integer"),
    (GOOD.replace("hours_per_day: 10", "hours_per_day: 0"), "service.hours_per_day", "greater than 0"),
    (GOOD.replace("peak_concurrency: 20", "peak_concurrency: -1"), "traffic.peak_concurrency",
     "greater than or equal to 0"),
    (GOOD.replace("parameters_billion: 7", "parameters_billion: 0"), "model.parameters_billion", "greater than 0"),
    (GOOD + "people: {fte: {onprem: 0}}\n", "people.fte", "must be above 0"),
    (GOOD + "horizon_months: 500\n", "horizon_months", "less than or equal to 120"),
    (GOOD + "colour: blue\n", "colour", "Extra inputs are not permitted"),
    (GOOD + "gpu_type: L4\n", "line 16", "duplicate key 'gpu_type' (first on line 15)"),
    (GOOD.replace("  peak_concurrency: 20\n", "  peak_concurrency: 20\n  peak_concurrency: 30\n"), "line 12",
     "duplicate key 'peak_concurrency' (first on line 11)"),
    ("", "scenario.yaml", "a scenario must be a YAML mapping, got NoneType"),
])
def test_a_bad_scenario_is_one_line_naming_the_file_and_the_field(tmp_path: Path, change: str, field: str,
                                                                 says: str) -> None:
    code, errors, output = compare(tmp_path, change)
    assert code == 1 and "Traceback" not in output
    assert len(errors) == 1, output
    assert errors[0].startswith(f"error: {tmp_path / 'scenario.yaml'}: ") and field in errors[0] and says in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("change", "says"), [
    (FIGURES.replace("  onprem.rack_units:\n    value: 42", "  onprem.rack_units:\n    value: 0"),
     "figures.onprem.rack_units: 0 is out of range for U/rack"),
    (FIGURES + "  fx.usd_eur:\n    value: 0.9\n    unit: EUR/USD\n    source: ECB\n    date: 2026-11-01\n"
               "    confidence: H\n", "duplicate key 'fx.usd_eur'"),
    (FIGURES.replace("    unit: W per server\n", "    unit: watts\n", 1),
     "figures.onprem.server_overhead_w: unit 'watts' has no valid range"),
])
def test_a_bad_figures_file_is_one_line_naming_it(tmp_path: Path, change: str, says: str) -> None:
    code, errors, output = compare(tmp_path, GOOD, change)
    assert code == 1 and "Traceback" not in output
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'figures.yaml'}: ") and says in errors[0]


def test_a_good_scenario_goes_through_the_cli(tmp_path: Path) -> None:
    code, errors, output = compare(tmp_path, GOOD)
    assert code == 0 and not errors, output
    assert (tmp_path / "out" / "report.json").exists()


def test_every_default_figure_has_a_unit_with_a_valid_range_and_lies_in_it() -> None:
    figures = load_figures(ROOT / "burden" / "figures.yaml")
    for figure in figures.items.values():
        valid = units.range_of(figure.unit)
        assert valid is not None and valid.contains(figure.value), figure.id
        assert "tco-anchors" not in figure.source and "/work/" not in figure.source


def _numeric(prop: dict[str, Any]) -> bool:
    kinds = [prop.get("type")] + [p.get("type") for p in prop.get("anyOf", [])]
    return "number" in kinds or "integer" in kinds


def test_every_numeric_scenario_field_has_a_unit_and_bounds() -> None:
    schema = Scenario.model_json_schema()
    # An override's value is checked against its figure's unit range (test below), not a range of its own.
    models = [schema, *(m for name, m in schema.get("$defs", {}).items() if name != "Override")]
    checked = 0
    for model in models:
        for name, prop in model.get("properties", {}).items():
            if not _numeric(prop):
                continue
            checked += 1
            flat = prop | {k: v for p in prop.get("anyOf", []) for k, v in p.items()}
            assert "unit" in prop, name
            assert ("minimum" in flat or "exclusiveMinimum" in flat) and "maximum" in flat, name
    assert checked >= 20


def test_a_bare_override_is_shown_unsourced_and_a_sourced_one_keeps_its_source(figures: Figures) -> None:
    _s, f = scenario(figures, overrides={
        "power.onprem.eur_per_kwh": 0.21,
        "gpu.L40S.card_eur": {"value": 7400, "source": "our quote, ACME, 2026-12", "date": "2026-12-01"}})
    bare, sourced = f.items["power.onprem.eur_per_kwh"], f.items["gpu.L40S.card_eur"]
    assert bare.overridden and bare.source == UNSOURCED and bare.confidence == "L" and bare.unsourced
    assert bare.origin == "user override" and bare.default_value == figures.items["power.onprem.eur_per_kwh"].value
    assert sourced.source == "our quote, ACME, 2026-12" and sourced.date == "2026-12-01" and not sourced.unsourced
    assert f.items["onprem.pue"].origin == "default"


def test_an_override_out_of_its_units_range_is_refused_before_any_cost(figures: Figures) -> None:
    with pytest.raises(BurdenError) as caught:
        scenario(figures, overrides={"onprem.rack_power_kw": 0, "gpu.L40S.card_eur": -1})
    assert caught.value.problems == [
        "test.yaml: overrides.gpu.L40S.card_eur: -1 is out of range for EUR (valid: 0 to 10_000_000)",
        "test.yaml: overrides.onprem.rack_power_kw: 0 is out of range for kW/rack (valid: 1 to 200)"]


def test_a_model_no_option_can_serve_is_one_line_not_an_empty_report(tmp_path: Path) -> None:
    text = GOOD.replace("parameters_billion: 7", "parameters_billion: 900") + "options: [onprem, cloud]\n"
    code, errors, output = compare(tmp_path, text)
    assert code == 1 and "Traceback" not in output and len(errors) == 1
    assert errors[0].startswith(f"error: {tmp_path / 'scenario.yaml'}: model: no option can serve m-7b: onprem: ")


LEAVES = ["parameters_billion: 7", "context_tokens: 4096", "kv_cache_bytes_per_token: 131072",
          "input_tokens_per_month: 400_000_000", "peak_concurrency: 20", "hours_per_day: 10", "days_per_month: 20",
          "gpu_type: L40S", "quantisation: int4"]
VALUES = ["", "-1", "1e400", "[1]", "{a: 1}", "null", "true", "'ten'"]


@pytest.mark.parametrize("leaf", LEAVES)
def test_no_value_in_any_field_gives_a_traceback(tmp_path: Path, leaf: str) -> None:
    key = leaf.split(":")[0]
    for value in VALUES:
        code, errors, output = compare(tmp_path, GOOD.replace(leaf, f"{key}: {value}"))
        assert "Traceback" not in output and code == 1 and errors, (leaf, value, output)
        assert all(e.startswith(f"error: {tmp_path / 'scenario.yaml'}: ") for e in errors)


def test_several_scenarios_are_compared_side_by_side_and_one_bad_file_writes_nothing(tmp_path: Path) -> None:
    one, two, bad = tmp_path / "one.yaml", tmp_path / "two.yaml", tmp_path / "bad.yaml"
    one.write_text(GOOD)
    two.write_text(GOOD.replace("name: good", "name: busy").replace("peak_concurrency: 20", "peak_concurrency: 200"))
    bad.write_text(GOOD + "colour: blue\n")
    common = ["--out", str(tmp_path / "out"), "--figures", str(ROOT / "burden/figures.yaml"),
              "--skills", str(ROOT / "burden/skills.yaml"), "--spec", str(ROOT / "serving/service.yaml"),
              "--state-dir", str(tmp_path / "state")]
    refused = CliRunner().invoke(app, ["compare", "-s", str(one), "-s", str(bad), *common])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert [line for line in refused.output.splitlines() if line.startswith("error:")] == [
        f"error: {bad}: colour: Extra inputs are not permitted"]
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["compare", "-s", str(one), "-s", str(two), *common])
    assert result.exit_code == 0, result.output
    index = (tmp_path / "out" / "index.md").read_text()
    assert "| good | onprem |" in index and "| busy | onprem |" in index
    assert (tmp_path / "out" / "1-one" / "report.html").exists()
    assert (tmp_path / "out" / "2-two" / "report.json").exists()


def test_a_managed_api_of_another_model_class_is_flagged_in_the_report(tmp_path: Path) -> None:
    """The manager compares like with like: an API serving a 70B model is not the baseline of a
    24B service (sizes from the providers' model cards, in burden/figures.yaml)."""
    import json

    same = GOOD.replace("parameters_billion: 7", "parameters_billion: 24") + "buy_api: scaleway-mistral-small-3.2\n"
    for name in ("same", "other", "given"):
        (tmp_path / name).mkdir()
    code, errors, output = compare(tmp_path / "same", same)
    assert code == 0 and not errors, output
    notes = json.loads((tmp_path / "same" / "out" / "report.json").read_text())["notes"]
    assert not [n for n in notes if n.startswith("buy_api:")]
    other = same.replace("buy_api: scaleway-mistral-small-3.2", "buy_api: scaleway-llama-3.3-70b")
    code, errors, output = compare(tmp_path / "other", other)
    assert code == 0 and not errors, output
    notes = json.loads((tmp_path / "other" / "out" / "report.json").read_text())["notes"]
    [flag] = [n for n in notes if n.startswith("buy_api:")]
    assert "serves a 70B model" in flag and "24B" in flag
    given = same.replace("buy_api: scaleway-mistral-small-3.2",
                         "buy_api: {name: my-api, eur_per_m_input: 0.1, eur_per_m_output: 0.2, "
                         "parameters_billion: 8, source: my contract 2026-11}")
    code, errors, output = compare(tmp_path / "given", given)
    assert code == 0 and not errors, output
    notes = json.loads((tmp_path / "given" / "out" / "report.json").read_text())["notes"]
    assert any(n.startswith("buy_api: my-api serves a 8B model") for n in notes)
