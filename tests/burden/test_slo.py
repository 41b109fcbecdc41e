"""Availability as deployed against the spec's SLO, and the price of one spare, worked out by hand."""

from __future__ import annotations

import pytest

from triptyque.burden import tco
from triptyque.burden.figures import Figures
from triptyque.burden.slo import continuity

from .conftest import deployment, scenario
from .test_tco import CLOUD, EDGE, ONPREM

RATE = {"gpu.interruptions_per_gpu_year": 0.2, "onprem.hardware_repair_hours": 24, "edge.device_replace_hours": 48}


def test_one_onprem_server_without_a_spare_against_a_99_5_percent_slo(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM | RATE)
    cost = tco.onprem(s, f, {})  # 2 GPUs in 1 server (test_tco: one server in a rack)
    k = continuity("onprem", s, f, cost, slo=0.995, cloud_repair_seconds=None, cloud_control_plane_sla="")
    down = 2 * 0.2 * 24 / 8760
    assert k.availability == pytest.approx(1 - down) and k.meets is True
    assert k.with_spare == pytest.approx(1 - down**2)
    hosting = max(2 / 42, 1.2 / 8) * 1000
    assert k.spare_eur == pytest.approx(28000 * 24 / 36 + (28000 * 0.1 / 12 + hosting) * 24)
    strict = continuity("onprem", s, f, cost, slo=0.9999, cloud_repair_seconds=None, cloud_control_plane_sla="")
    assert strict.meets is False  # 99.89 % < 99.99 %


def test_the_cloud_repairs_by_autohealing_in_the_modelled_scale_out_time(figures: Figures) -> None:
    s, f = scenario(figures, gpu_type="L4", overrides=CLOUD | RATE,
                    traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0, "peak_concurrency": 10})
    cost = tco.cloud(s, f, {}, deployment())
    k = continuity("cloud", s, f, cost, slo=0.995, cloud_repair_seconds=600, cloud_control_plane_sla="no SLA")
    assert k.availability == pytest.approx(1 - 1 * 0.2 * (600 / 3600) / 8760)
    assert k.spare_eur == pytest.approx(730 * 0.8 * 24)  # one more always-on L4 node over the horizon
    assert any("no SLA" in p for p in k.single_points)


def test_edge_availability_is_per_site_and_the_api_is_the_providers(figures: Figures) -> None:
    s, f = scenario(figures, edge={"sites": 4}, overrides=EDGE | RATE,
                    traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0, "peak_concurrency": 4})
    cost = tco.edge(s, f, {})  # 1 device per site
    k = continuity("edge", s, f, cost, slo=0.995, cloud_repair_seconds=None, cloud_control_plane_sla="")
    assert k.accelerators == 1 and k.availability == pytest.approx(1 - 0.2 * 48 / 8760)
    assert k.spare_eur == pytest.approx(4 * 249 * 0.9)
    api = continuity("buy", s, f, tco.buy(s, f, {}), slo=0.995, cloud_repair_seconds=None,
                     cloud_control_plane_sla="")
    assert api.availability is None and api.meets is None
