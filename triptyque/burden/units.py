"""Every unit a figure may carry, with the range of values that makes sense in it.

A figure's unit is read up to its first `` (`` ("EUR/h per node (L4-1-24G, 1 GPU)" is
an ``EUR/h per node``). A value outside its unit's range, a unit not listed here, or
zero where the range starts above zero is refused when the figures file or a
scenario's override is read, so no nonsense reaches the cost model (a rack of 0
servers, a 0-hour working year, a negative price).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{_number(self.low)} to {_number(self.high)}"


def _number(value: float) -> str:
    return f"{int(value):_}" if float(value).is_integer() else f"{value:g}"


RANGES: dict[str, Range] = {
    # calendar, currency, people
    "h/month": Range(672, 744),
    "EUR/USD": Range(0.5, 1.5),
    "h/FTE/year": Range(1000, 2500),
    "EUR/year": Range(10_000, 500_000),
    "FTE": Range(0, 20),
    "people": Range(1, 100),
    # money
    "EUR": Range(0, 10_000_000),
    "USD": Range(0, 10_000_000),
    "EUR per server": Range(0, 10_000_000),
    "USD per server": Range(1, 10_000_000),
    "USD per device": Range(1, 1_000_000),
    "EUR/rack/month": Range(1, 100_000),
    "EUR/month": Range(0, 100_000),
    "EUR/GB": Range(0, 10),
    "EUR/GB/month": Range(0, 10),
    "EUR/h per node": Range(0, 1000),
    "EUR/h": Range(0, 1000),
    "EUR/kWh": Range(0.01, 2),
    "EUR per million input tokens": Range(0, 1000),
    "EUR per million output tokens": Range(0, 1000),
    "ratio/year": Range(0, 1),
    # hardware
    "GPU/server": Range(1, 16),
    "GPU/node": Range(1, 16),
    "GB": Range(0.1, 100_000),
    "W": Range(1, 20_000),
    "W per server": Range(0, 20_000),
    "kW/rack": Range(1, 200),
    "EUR/kW": Range(0, 100_000),
    "ports": Range(1, 256),
    "U": Range(1, 48),
    "U/rack": Range(1, 60),
    "tokens/s per GPU": Range(1, 1_000_000),
    "tokens/s per device": Range(0.1, 100_000),
    "concurrent requests per GPU": Range(1, 10_000),
    "concurrent requests per device": Range(1, 10_000),
    "nodes": Range(0, 1000),
    # ratios
    "ratio": Range(0, 1),
    "ratio of book value": Range(0, 1),
    "PUE": Range(1, 3),
    "years": Range(1, 15),
    "days": Range(0, 3650),
    "min per scale-up": Range(0, 240),
    "GB/month": Range(0, 1_000_000),
    "bytes/token": Range(1, 1000),
    "billion parameters": Range(0.01, 2000),
    # hours of work
    "h/site/year": Range(0, 8760),
    "h/component/year": Range(0, 8760),
    "h/pin/year": Range(0, 8760),
    "h/dependency/year": Range(0, 8760),
    "h/server/year": Range(0, 8760),
    "h/step/year": Range(0, 8760),
    "h/upgrade": Range(0, 1000),
    "h/model/year": Range(0, 8760),
    "h/year": Range(0, 100_000),
    "h/resource": Range(0, 1000),
    "h/component": Range(0, 1000),
    "s": Range(0, 1_000_000),
    "h": Range(0, 10_000),
    "per GPU-year": Range(0, 10),
    "per year": Range(0, 365),
}


def base_unit(unit: str) -> str:
    return unit.split(" (", 1)[0].strip()


def range_of(unit: str) -> Range | None:
    return RANGES.get(base_unit(unit))


def problem(value: float, unit: str) -> str | None:
    """Why ``value`` is not valid in ``unit``; None when it is."""
    valid = range_of(unit)
    if valid is None:
        return f"unit {unit!r} has no valid range; use one of: {', '.join(sorted(RANGES))}"
    if not valid.contains(value):
        what = _number(value)
        return f"{what} is out of range for {base_unit(unit)} (valid: {valid.describe()})"
    return None
