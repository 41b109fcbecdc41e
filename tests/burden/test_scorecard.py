"""The scorecard's value and run feasibility, by hand: not cost alone, and the team's own skills."""

from __future__ import annotations

from pathlib import Path

import pytest

from triptyque.burden import tco
from triptyque.burden.figures import Figures
from triptyque.burden.scorecard import run_score, value_score

from .conftest import scenario
from .test_tco import ONPREM
from .test_validation import GOOD, compare


def test_value_averages_the_cost_score_with_the_slo_as_deployed(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM)
    cost = tco.onprem(s, f, {})
    per_m = cost.cost_per_million_tokens
    assert per_m is not None
    cheapest = per_m / 2  # another option is twice cheaper: cost score 1 + 4 x 0.5 = 3
    assert value_score(cost, cheapest, True).score == pytest.approx((3 + 5) / 2)
    assert value_score(cost, cheapest, False).score == pytest.approx((3 + 2) / 2)
    assert value_score(cost, cheapest, None).inputs["SLO as deployed"] == "unknown (the provider's)"


def test_the_skills_the_team_lacks_cap_run_feasibility(figures: Figures) -> None:
    needed = ["ai.gpu", "infra.linux", "infra.network", "support.iam"]
    s, _f = scenario(figures, people={"fte_available": 5, "skills": ["infra.linux", "infra.network"]})
    capped = run_score(1.0, s, skills=4, needed_skills=needed)
    assert capped.score == pytest.approx(1 + 4 * 2 / 4)  # half the needed skills: 3, though 5 FTE for 1
    assert capped.inputs["skills the team lacks"] == "ai.gpu, support.iam"
    everyone, _f = scenario(figures, people={"fte_available": 5, "skills": needed})
    assert run_score(1.0, everyone, skills=4, needed_skills=needed).score == 5
    unsaid, _f = scenario(figures, people={"fte_available": 5})
    assert run_score(1.0, unsaid, skills=4, needed_skills=needed).score == 5  # not given: FTE only


def test_an_unknown_skill_is_one_line_naming_the_field(tmp_path: Path) -> None:
    code, errors, output = compare(tmp_path, GOOD + "people: {skills: [infra.linux, cooking]}\n")
    assert code == 1 and "Traceback" not in output and len(errors) == 1
    assert errors[0].startswith(f"error: {tmp_path / 'scenario.yaml'}: people.skills: unknown skill 'cooking'")
