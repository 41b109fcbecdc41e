"""Exit cost by hand: porting, building the destination, moving the weights and logs, stranded hardware."""

from __future__ import annotations

import pytest

from triptyque.burden import tco
from triptyque.burden.evidence import Evidence
from triptyque.burden.exit import exit_cost
from triptyque.burden.figures import Figures

from .conftest import scenario
from .test_tco import ONPREM

EXIT = {"exit.hours_per_provider_specific_resource": 6, "exit.hours_per_portable_resource": 0.5,
        "exit.hours_per_destination_component": 16, "people.sre.loaded_eur_year": 80_000,
        "people.hours_per_fte_year": 1600, "exit.hardware_resale_fraction": 0.3,
        "cloud.object_storage_free_gb_month": 75, "cloud.object_storage_egress_eur_per_gb": 0.01}


def test_leaving_onprem_for_the_cloud_counts_building_the_cloud(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM | EXIT, data={"logs_gb_per_month": 5, "log_retention_months": 12})
    cost = tco.onprem(s, f, {})
    leaving = exit_cost("onprem", s, f, tco=cost, counts={"provider_specific_resources": 1, "portable_resources": 4},
                        redeploy=Evidence(1800.0, False, "figures"), destination_counts={"components": 10})
    rate = 80_000 / 1600  # 50 EUR/h
    lines = leaving.by_line()
    assert lines["porting"] == pytest.approx((1 * 6 + 4 * 0.5) * rate)
    assert lines["building the destination"] == pytest.approx((10 * 16 + 1800 / 3600) * rate)  # 8,025 EUR
    assert leaving.egress_gb == pytest.approx(7 * 0.5 + 5 * 12)  # the model's 3.5 GB of weights + a year of logs
    assert lines["stranded hardware"] == pytest.approx(cost.residual_book_value * 0.7)
    assert leaving.total_eur == pytest.approx(sum(lines.values()))
