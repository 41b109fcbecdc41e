"""Break-even volume, ranges and sensitivity, each against a scenario whose answer is worked out by hand."""

from __future__ import annotations

import pytest

from triptyque.burden import decision, tco
from triptyque.burden.figures import Figures
from triptyque.burden.scenario import Option, Scenario

from .conftest import deployment, scenario
from .test_tco import ONPREM

API = {"buy.scaleway-mistral-small-3.2.eur_per_m_input": {"value": 0.15, "source": "price list", "confidence": "H"},
       "buy.scaleway-mistral-small-3.2.eur_per_m_output": {"value": 0.35, "source": "price list", "confidence": "M"},
       "buy.fte": 0}


def _people(s: Scenario, f: Figures) -> dict[Option, dict[str, float]]:
    return {o: tco.people_fte(s, f, o, {}) for o in s.compared}


def test_the_break_even_volume_against_the_managed_api_matches_a_hand_computation(figures: Figures) -> None:
    # No peak, so the on-prem side stays one L40S replica (6,000 tok/s) up to 86 x this volume.
    s, f = scenario(figures, options=["onprem", "buy"], overrides=ONPREM | API,
                    traffic={"input_tokens_per_month": 100_000_000, "output_tokens_per_month": 50_000_000,
                             "peak_concurrency": 0})
    capex = 12000 + 8000
    hosting = max(2 / 42, (500 + 350) / 1000 / 8) * 1000  # power share of the rack: 0.10625
    onprem = capex * 24 / 36 + 24 * (capex * 0.1 / 12 + hosting)
    api_per_volume = 24 * (100 * 0.15 + 50 * 0.35)  # EUR over 24 months at 1x the scenario's volume
    factor = onprem / api_per_volume
    assert factor < 86  # still one replica there
    people = _people(s, f)
    assert decision.break_even("onprem", s, f, people, deployment()) == pytest.approx(factor * 150e6, rel=1e-6)
    costs = tco.compute(s, f, {}, deployment())
    assert costs["onprem"].tco_economic == pytest.approx(onprem)
    verdict = decision.decide(s, f, people, deployment(), costs).verdict
    assert any(line.startswith("onprem vs the managed API: cheaper from 3,823,717,9") for line in verdict)


def test_an_option_that_never_catches_up_has_no_break_even(figures: Figures) -> None:
    s, f = scenario(figures, options=["onprem", "buy"], overrides=ONPREM | API | {
        "buy.scaleway-mistral-small-3.2.eur_per_m_input": 0, "buy.scaleway-mistral-small-3.2.eur_per_m_output": 0})
    assert decision.break_even("onprem", s, f, _people(s, f), deployment()) is None


def test_a_range_comes_from_each_figures_confidence_and_the_sensitivity_order_from_its_swing(
    figures: Figures
) -> None:
    s, f = scenario(figures, options=["buy"], overrides=API)
    costs = tco.compute(s, f, {}, deployment())
    d = decision.decide(s, f, _people(s, f), deployment(), costs)
    # Input 100 M x 0.15 (H: +-5 %), output 50 M x 0.35 (M: +-15 %) a month, over 24 months; no people (0 FTE).
    point = 24 * (100 * 0.15 + 50 * 0.35)
    low = 24 * (100 * 0.15 * 0.95 + 50 * 0.35 * 0.85)
    high = 24 * (100 * 0.15 * 1.05 + 50 * 0.35 * 1.15)
    r = d.ranges["buy"]
    assert (r.low, r.point, r.high) == pytest.approx((low, point, high))
    assert r.low < r.point < r.high
    # The output price swings 24 x 50 x 0.35 x 0.30 = 126 EUR, the input price 24 x 100 x 0.15 x 0.10 = 36 EUR.
    found = d.sensitivity["buy"]
    assert [w.figure for w in found] == ["buy.scaleway-mistral-small-3.2.eur_per_m_output",
                                         "buy.scaleway-mistral-small-3.2.eur_per_m_input"]
    assert [w.width for w in found] == pytest.approx([126.0, 36.0])


def test_every_total_of_a_full_scenario_lies_within_its_range(figures: Figures) -> None:
    s, f = scenario(figures, edge={"sites": 2})
    people = {o: tco.people_fte(s, f, o, {"sre": 0.2}) for o in s.compared}
    costs = tco.compute(s, f, {o: {"sre": 0.2} for o in s.compared}, deployment())
    d = decision.decide(s, f, people, deployment(), costs)
    assert set(d.ranges) == set(costs) == {"edge", "onprem", "cloud", "buy"}
    for option, cost in costs.items():
        r = d.ranges[option]
        assert r.low < cost.tco_economic == r.point < r.high, option
        widths = [w.width for w in d.sensitivity[option]]
        assert widths == sorted(widths, reverse=True)


def test_definitions_are_held_and_bounds_stay_within_the_units_range(figures: Figures) -> None:
    assert decision.bounds(figures, "time.hours_per_month") == (730, 730)
    assert decision.bounds(figures, "gpu.L40S.gpus_per_server") == (4, 4)
    low, high = decision.bounds(figures, "power.idle_fraction")  # M, 0.087 +- 15 %
    assert (low, high) == pytest.approx((0.087 * 0.85, 0.087 * 1.15))
    _s, f = scenario(figures, overrides={"gpu.memory_utilization": {"value": 0.9, "source": "x", "confidence": "L"}})
    assert decision.bounds(f, "gpu.memory_utilization") == pytest.approx((0.9 * 0.65, 1.0))  # ratio <= 1


def test_the_fte_estimate_is_a_range_too_unless_the_scenario_gives_its_own(figures: Figures) -> None:
    s, f = scenario(figures, options=["onprem"], overrides=ONPREM)
    people: dict[Option, dict[str, float]] = {"onprem": {"sre": 0.5}}
    costs = {"onprem": tco.onprem(s, f, people["onprem"])}
    found = {w.figure: w for w in decision.swings("onprem", costs["onprem"], s, f, people["onprem"], deployment())}
    # 0.5 FTE x 84,000 EUR over 2 years = 84,000 EUR, +-35 % (an estimate from L hours figures).
    assert found[decision.PEOPLE].width == pytest.approx(84_000 * 0.7)
    mine, f = scenario(figures, options=["onprem"], overrides=ONPREM, people={"fte": {"onprem": 0.5}})
    assert decision.PEOPLE not in {w.figure for w in decision.swings("onprem", costs["onprem"], mine, f,
                                                                    people["onprem"], deployment())}
