"""What decides: ranges on every total, the figures that move it most, the volume where it flips.

Pure functions over ``tco.price``; nothing here reads a file.

Ranges: each figure an option uses gets a low and a high value from its confidence
(H +-5 %, M +-15 %, L +-35 %, kept within its unit's range); definitions (hours in a
month, GPUs per server or node, GPU memory, rack height) are held. The option is
re-priced with one figure at a time at its low and at its high value. The FTE moves
between the low and the high end of each skill domain's staffing band (the source
documents' level, ``staffing.py``) when the caller gives them, else (a self-run option) as
one L figure, +-35 %; never when the scenario gives its own FTE (``people.fte``). The
total's range adds every change that lowers it (low) and every change that raises it
(high), so it always contains the point estimate (a worst case that assumes no figure
offsets another). The same one-at-a-time swings, largest first, are the sensitivity
(tornado).

Break-even: the monthly token volume at which a self-run option's economic TCO equals
the managed API's, input and output scaled together from the scenario's mix; found on
a geometric grid then by bisection, between 1/1000 and 10,000 times the scenario's
volume. Above it, self-running is cheaper (until the hardware as configured can no
longer serve the load).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from triptyque.burden import units
from triptyque.burden.deployed import CloudDeployment
from triptyque.burden.figures import Figures
from triptyque.burden.scenario import Option, Scenario
from triptyque.burden.tco import TOIL, OptionCost, Unserved, price

SPREAD = {"H": 0.05, "M": 0.15, "L": 0.35}
HELD = (".gpus_per_server", ".gpus", ".memory_gb", "onprem.rack_units", "time.hours_per_month", ".server_u")
SELF_RUN: tuple[Option, ...] = ("edge", "onprem", "cloud")
PEOPLE = "people FTE estimate (x)"


@dataclass(frozen=True)
class Swing:
    figure: str
    low_value: float
    high_value: float
    total_at_low: float
    total_at_high: float

    @property
    def width(self) -> float:
        return abs(self.total_at_high - self.total_at_low)


@dataclass(frozen=True)
class Range:
    low: float
    point: float
    high: float


@dataclass
class Decision:
    ranges: dict[Option, Range]
    sensitivity: dict[Option, list[Swing]]
    break_even: dict[Option, float | None]
    verdict: list[str] = field(default_factory=list)
    curves: dict[Option, list[tuple[float, float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ranges": {o: asdict(r) for o, r in self.ranges.items()},
                "curves": {o: [[v, t if math.isfinite(t) else None] for v, t in points]
                           for o, points in self.curves.items()},
                "sensitivity": {o: [asdict(w) | {"width": w.width} for w in ws] for o, ws in self.sensitivity.items()},
                "break_even_tokens_per_month": self.break_even, "verdict": self.verdict,
                "spread_by_confidence": SPREAD}


def bounds(figures: Figures, figure_id: str) -> tuple[float, float]:
    """A figure's low and high value from its confidence, within its unit's range."""
    f = figures.items[figure_id]
    if figure_id.endswith(HELD) or figure_id in HELD:
        return f.value, f.value
    spread = SPREAD[f.confidence]
    low, high = f.value * (1 - spread), f.value * (1 + spread)
    valid = units.range_of(f.unit)
    if valid is not None:
        low, high = max(low, valid.low), min(high, valid.high)
    return low, high


def _total(option: Option, s: Scenario, figures: Figures, people: dict[str, float],
           deployment: CloudDeployment) -> float:
    try:
        return price(option, s, figures, people, deployment).tco_economic
    except Unserved:
        return math.inf


def swings(option: Option, cost: OptionCost, s: Scenario, figures: Figures, people: dict[str, float],
           deployment: CloudDeployment,
           people_bounds: tuple[dict[str, float], dict[str, float]] | None = None) -> list[Swing]:
    used = sorted({i for item in cost.items for i in item.figures})
    out = []
    for figure_id in used:
        low, high = bounds(figures, figure_id)
        if low == high:
            continue
        at_low = _total(option, s, figures.with_values({figure_id: low}), people, deployment)
        at_high = _total(option, s, figures.with_values({figure_id: high}), people, deployment)
        out.append(Swing(figure_id, low, high, at_low, at_high))
    if people_bounds is not None and option not in s.people.fte:
        # The FTE at the low and the high end of each domain's band (the source documents' level, widened by
        # the drivers; staffing.py), measured toil and on-call held: factors shown against the point's total.
        fewest, most = people_bounds
        point = sum(people.values())
        at_low = _total(option, s, figures, fewest, deployment)
        at_high = _total(option, s, figures, most, deployment)
        if fewest != most:
            out.append(Swing(PEOPLE, sum(fewest.values()) / point if point else 1.0,
                             sum(most.values()) / point if point else 1.0, at_low, at_high))
    elif people and option != "buy" and option not in s.people.fte:
        # The FTE estimate comes from hours figures of confidence L: it moves as one of them would.
        spread = SPREAD["L"]
        def scaled(factor: float) -> dict[str, float]:  # measured toil is held
            return {r: v if r.startswith(TOIL) else v * factor for r, v in people.items()}

        at_low = _total(option, s, figures, scaled(1 - spread), deployment)
        at_high = _total(option, s, figures, scaled(1 + spread), deployment)
        out.append(Swing(PEOPLE, 1 - spread, 1 + spread, at_low, at_high))
    return sorted(out, key=lambda w: (-w.width, w.figure))


def total_range(point: float, found: list[Swing]) -> Range:
    down = sum(min(w.total_at_low - point, w.total_at_high - point, 0.0) for w in found)
    up = sum(max(w.total_at_low - point, w.total_at_high - point, 0.0) for w in found)
    return Range(point + down, point, point + up)


def _scaled(s: Scenario, factor: float) -> Scenario:
    traffic = s.traffic.model_copy(update={
        "input_tokens_per_month": round(s.traffic.input_tokens_per_month * factor),
        "output_tokens_per_month": round(s.traffic.output_tokens_per_month * factor),
        "peak_concurrency": math.ceil(s.traffic.peak_concurrency * factor)})
    return s.model_copy(update={"traffic": traffic})


def break_even(option: Option, s: Scenario, figures: Figures, people: dict[Option, dict[str, float]],
               deployment: CloudDeployment) -> float | None:
    """Monthly tokens (input + output) from which ``option`` costs less than the managed API; None if never."""
    volume = s.traffic.input_tokens_per_month + s.traffic.output_tokens_per_month
    if volume == 0:
        return None

    def gap(factor: float) -> float:
        scaled = _scaled(s, factor)
        return (_total(option, scaled, figures, people[option], deployment)
                - _total("buy", scaled, figures, people["buy"], deployment))

    grid = [10 ** (e / 8) for e in range(-24, 33)]
    previous = grid[0]
    if gap(previous) <= 0:
        return previous * volume
    for factor in grid[1:]:
        if gap(factor) <= 0:
            low, high = previous, factor
            for _ in range(60):
                middle = (low + high) / 2
                low, high = (low, middle) if gap(middle) <= 0 else (middle, high)
            return high * volume
        previous = factor
    return None


CURVE = [10 ** (e / 4) for e in range(-8, 9)]  # 1/100 to 100 times the scenario's volume


def curve(option: Option, s: Scenario, figures: Figures, people: dict[str, float],
          deployment: CloudDeployment) -> list[tuple[float, float]]:
    """(monthly tokens, economic TCO) at 1/100 to 100 times the scenario's volume; inf where it cannot serve."""
    volume = s.traffic.input_tokens_per_month + s.traffic.output_tokens_per_month
    if volume == 0:
        return []
    return [(factor * volume, _total(option, _scaled(s, factor), figures, people, deployment)) for factor in CURVE]


def decide(s: Scenario, figures: Figures, people: dict[Option, dict[str, float]], deployment: CloudDeployment,
           costs: dict[Option, OptionCost],
           people_bounds: dict[Option, tuple[dict[str, float], dict[str, float]]] | None = None) -> Decision:
    """``people_bounds``: each option's FTE at the low and high end of its staffing bands (``staffing.py``);
    without them the FTE estimate of a self-run option moves +-35 %."""
    ranges, sensitivity = {}, {}
    for option, cost in costs.items():
        found = swings(option, cost, s, figures, people[option], deployment, (people_bounds or {}).get(option))
        sensitivity[option] = found
        ranges[option] = total_range(cost.tco_economic, found)
    flips: dict[Option, float | None] = {}
    if "buy" in costs:
        for option in (o for o in SELF_RUN if o in costs):
            flips[option] = break_even(option, s, figures, people, deployment)
    verdict = []
    if costs:
        cheapest = min(costs, key=lambda o: costs[o].tco_economic)
        overlapping = [o for o in costs if o != cheapest and ranges[o].low <= ranges[cheapest].high]
        verdict.append(f"Cost: {cheapest} is cheapest at this volume ({costs[cheapest].tco_economic:,.0f} EUR over "
                       f"{s.horizon_months} months)" + (f"; within the ranges of {', '.join(overlapping)}"
                                                        if overlapping else "") + ".")
        for option, volume in flips.items():
            verdict.append(f"{option} vs the managed API: " + (
                f"cheaper from {volume:,.0f} tokens a month" if volume is not None
                else "never cheaper between 1/1000 and 10,000 times this volume") + ".")
    curves = {o: curve(o, s, figures, people[o], deployment) for o in costs}
    return Decision(ranges, sensitivity, flips, verdict, curves)
