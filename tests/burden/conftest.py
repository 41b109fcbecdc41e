"""Shared helpers of the burden tests: the checkout's figures, scenarios built in the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from triptyque.burden.figures import Figures, load_figures
from triptyque.burden.scenario import Scenario, parse_scenario


@pytest.fixture(scope="session")
def figures() -> Figures:
    return load_figures(ROOT / "burden" / "figures.yaml")


def scenario(figures: Figures, **fields: Any) -> tuple[Scenario, Figures]:
    """A scenario from keyword fields (defaults: a small office-hours service on one L40S)."""
    raw: dict[str, Any] = {
        "name": "test",
        "traffic": {"input_tokens_per_month": 100_000_000, "output_tokens_per_month": 50_000_000,
                    "peak_concurrency": 70},
        "service": {"hours_per_day": 10, "days_per_month": 20},
        "gpu_type": "L40S",
    }
    raw.update(fields)
    return parse_scenario(raw, Path("test.yaml"), Figures(dict(figures.items)))
