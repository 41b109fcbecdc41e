"""The decision scorecard of seed 003: value, risk, dependency, data and run feasibility.

Each score is 1 (worst) to 5 (best), computed by a rule written next to it from inputs
that are shown with it; the weights come from the scenario (``weights:``) and are
normalised to sum to 1. Nothing here is a judgement the reader cannot redo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from triptyque.burden.evidence import Evidence
from triptyque.burden.exit import ExitCost
from triptyque.burden.scenario import Option, Scenario
from triptyque.burden.tco import OptionCost

DIMENSIONS = ("value", "risk", "dependency", "data", "run")


@dataclass
class Score:
    score: float
    rule: str
    inputs: dict[str, str]


@dataclass
class Scorecard:
    option: Option
    scores: dict[str, Score]
    weights: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.scores[d].score * self.weights[d] for d in DIMENSIONS)

    def as_dict(self) -> dict[str, Any]:
        return {"option": self.option, "total": self.total, "weights": self.weights,
                "scores": {d: asdict(s) for d, s in self.scores.items()}}


def _steps(value: float, thresholds: list[tuple[float, float]], otherwise: float) -> float:
    for limit, score in thresholds:
        if value <= limit:
            return score
    return otherwise


SLO_FIT = {True: 5.0, None: 3.0, False: 2.0}


def value_score(cost: OptionCost, cheapest: float, slo_fit: bool | None = None) -> Score:
    """Not cost alone: the cost score and whether the option meets the SLO as deployed, averaged."""
    per_m = cost.cost_per_million_tokens
    basis = per_m if per_m is not None else cost.tco_economic
    ratio = cheapest / basis if basis else 1.0
    unit = "EUR per million tokens (reservation-based)" if per_m is not None else "EUR TCO (no tokens)"
    cost_score = 1 + 4 * ratio
    fit = SLO_FIT[slo_fit]
    return Score(round((cost_score + fit) / 2, 2),
                 "mean of: cost 1 + 4 x (cheapest option / this option); SLO as deployed met 5, unknown 3, missed 2",
                 {unit: f"{basis:,.3f}", "cheapest": f"{cheapest:,.3f}", "cost score": f"{cost_score:.2f}",
                  "SLO as deployed": {True: "met", None: "unknown (the provider's)", False: "missed"}[slo_fit]})


def risk_score(restore: Evidence | None, refuse: Evidence | None, pinned: int | None) -> Score:
    parts, inputs = [], {}
    if restore is not None:
        parts.append(_steps(restore.value, [(300, 5), (3600, 4), (86400, 3)], 2))
        inputs["time to restore after an engine crash"] = f"{restore.value:,.1f} s ({restore.label}: {restore.source})"
    else:
        parts.append(4)
        inputs["time to restore"] = "the provider's (not yours to act on): 4"
    if refuse is not None:
        parts.append(_steps(refuse.value, [(1, 5), (30, 4)], 3))
        inputs["kill switch: time until every replica refuses"] = f"{refuse.value:,.3f} s ({refuse.label})"
    else:
        parts.append(3)
        inputs["kill switch"] = "revoking the API key at the provider: 3"
    if pinned is not None:
        parts.append(_steps(pinned, [(5, 5), (10, 4), (20, 3)], 2))
        inputs["pinned versions to patch"] = str(pinned)
    return Score(round(sum(parts) / len(parts), 2),
                 "mean of: restore <=5 min 5, <=1 h (DORA elite) 4, <=1 day 3, else 2; refusal <=1 s 5, "
                 "<=30 s 4, else 3; pins <=5 5, <=10 4, <=20 3, else 2", inputs)


def dependency_score(exit_cost: ExitCost) -> Score:
    total = exit_cost.provider_specific + exit_cost.portable
    share = exit_cost.portable / total if total else 1.0
    commitment = exit_cost.by_line().get("commitments", 0.0) + exit_cost.by_line().get("stranded hardware", 0.0)
    score = max(1.0, 1 + 4 * share - (1 if commitment > 0 else 0))
    return Score(round(score, 2), "1 + 4 x portable share of resources, minus 1 with a commitment or stranded hardware",
                 {"portable resources": str(exit_cost.portable),
                  "provider-specific resources": str(exit_cost.provider_specific),
                  "commitments and stranded hardware": f"{commitment:,.0f} EUR",
                  "exit cost": f"{exit_cost.total_eur:,.0f} EUR"})


DATA_RULES: dict[str, dict[str, float]] = {
    "edge": {"low": 5, "medium": 5, "high": 5}, "onprem": {"low": 5, "medium": 5, "high": 5},
    "cloud": {"low": 5, "medium": 4, "high": 3}, "buy": {"low": 4, "medium": 3, "high": 2},
}
WHERE_DATA_GOES = {"edge": "stays on the sites", "onprem": "stays in the organisation's rooms",
                   "cloud": "on an EU provider's machines (Scaleway, EU region pinned)",
                   "buy": "sent to the API provider"}


def data_score(option: Option, s: Scenario) -> Score:
    return Score(DATA_RULES[option][s.data.sensitivity],
                 "by where prompts and answers are processed, against the data's sensitivity",
                 {"sensitivity": s.data.sensitivity, "where the data goes": WHERE_DATA_GOES[option]})


def run_score(fte_needed: float, s: Scenario, skills: int, rota_people: float | None = None,
              needed_skills: list[str] | None = None) -> Score:
    """FTE available against FTE needed; a 24/7 self-run service also needs a full on-call rota; with the
    team's skills given (``people.skills``), the share of the needed skills it has caps the score."""
    available = s.people.fte_available
    ratio = available / fte_needed if fte_needed else float("inf")
    score: float = 5 if ratio >= 1.5 else 4 if ratio >= 1 else 3 if ratio >= 0.75 else 2 if ratio >= 0.5 else 1
    inputs = {"FTE needed (estimate)": f"{fte_needed:.2f}", "FTE available": f"{available:g}",
              "skills involved": str(skills)}
    rule = "FTE available / FTE needed: >=1.5 5, >=1 4, >=0.75 3, >=0.5 2, else 1"
    if rota_people is not None:
        inputs["24/7 on-call rota"] = (f"needs {rota_people:g} people (people.oncall_rota_min_people); "
                                       f"{available:g} FTE available")
        rule += "; a 24/7 rota the FTE available cannot staff caps the score at 2"
        if available < rota_people:
            score = min(score, 2)
    if s.people.skills is not None and needed_skills:
        missing = sorted(set(needed_skills) - set(s.people.skills))
        share = 1 - len(missing) / len(needed_skills)
        inputs["skills the team lacks"] = ", ".join(missing) or "none"
        rule += "; capped at 1 + 4 x the share of the needed skills the team has"
        score = min(score, round(1 + 4 * share, 2))
    return Score(score, rule, inputs)


def scorecard(option: Option, s: Scenario, *, cost: OptionCost, cheapest: float, restore: Evidence | None,
              refuse: Evidence | None, pinned: int | None, exit_cost: ExitCost, skills: int,
              rota_people: float | None = None, needed_skills: list[str] | None = None,
              slo_fit: bool | None = None) -> Scorecard:
    return Scorecard(option, {
        "value": value_score(cost, cheapest, slo_fit),
        "risk": risk_score(restore, refuse, pinned),
        "dependency": dependency_score(exit_cost),
        "data": data_score(option, s),
        "run": run_score(sum(cost.fte.values()), s, skills,
                         rota_people if s.people.on_call_24x7 and option != "buy" else None, needed_skills),
    }, s.weights.normalised())
