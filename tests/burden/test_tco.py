"""The cost model against scenarios computed by hand, the arithmetic written out below.

Every scenario pins the figures it uses through ``overrides``, so the expected values
read from this file alone and do not move when a default in burden/figures.yaml does.
"""

from __future__ import annotations

import math

import pytest

from triptyque.burden import tco
from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figures

from .conftest import scenario

HOURS = 730
ONPREM = {
    "time.hours_per_month": HOURS, "gpu.L40S.card_eur": 8000, "gpu.L40S.chassis_eur": 12000,
    "gpu.L40S.gpus_per_server": 4, "gpu.L40S.board_w": 350, "gpu.L40S.output_tokens_per_second": 6000,
    "gpu.max_concurrency": 64, "onprem.server_overhead_w": 500, "power.idle_fraction": 0.1, "onprem.pue": 1.5,
    "power.onprem.eur_per_kwh": 0.2, "onprem.colocation_eur_per_rack_month": 1000, "onprem.servers_per_rack": 10,
    "onprem.depreciation_years": 3, "people.sre.loaded_eur_year": 84000, "people.mlops.loaded_eur_year": 90000,
    "traffic.egress_bytes_per_output_token": 8, "onprem.egress_eur_per_gb": 0,
}
CLOUD = {
    "time.hours_per_month": HOURS, "gpu.L4.output_tokens_per_second": 2000, "gpu.max_concurrency": 64,
    "cloud.L4.gpus_per_node": 1, "cloud.L4.node_eur_per_hour": 0.8, "cloud.gpu_node_boot_minutes": 7,
    "cloud.system_nodes": 2, "cloud.system_node_eur_per_hour": 0.05, "cloud.control_plane.shared_eur_per_hour": 0,
    "cloud.control_plane.dedicated_eur_per_hour": 0.11, "cloud.egress_eur_per_gb": 0,
    "traffic.egress_bytes_per_output_token": 8, "people.sre.loaded_eur_year": 84000,
}
EDGE = {
    "time.hours_per_month": HOURS, "fx.usd_eur": 0.9, "edge.device_usd": 249, "edge.device_busy_w": 25,
    "edge.device_idle_w": 7, "edge.device_output_tokens_per_second": 20, "edge.device_max_concurrency": 2,
    "edge.pue": 1.0, "power.edge.eur_per_kwh": 0.16, "edge.depreciation_years": 3,
    "edge.support_hours_per_site_year": 6, "people.support.loaded_eur_year": 42000,
}


def test_onprem_buys_two_gpus_for_the_peak_and_prices_capex_power_hosting_and_people(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM)
    cost = tco.onprem(s, f, {"sre": 0.5})

    # Peak 70 / 64 per GPU -> 2 GPUs; volume 50M tokens / (200 h x 3600 s) = 69 tok/s -> 1; one server of 4.
    assert cost.sizing["gpus"] == 2 and cost.sizing["servers"] == 1
    capex = 1 * 12000 + 2 * 8000
    implied = 50e6 / (2 * 6000 * 3600 * 730)
    draw_w = (1 * 500 + 2 * 350) * (0.1 + 0.9 * implied)
    power = draw_w / 1000 * 730 * 1.5 * 0.2
    hosting = 1 * 1000
    people = 0.5 * 84000 / 12
    monthly = power + hosting + 0 + people
    assert cost.sizing["implied_utilisation"] == pytest.approx(implied)
    assert cost.upfront == pytest.approx(capex)
    assert cost.monthly == pytest.approx(monthly)
    assert cost.tco_cash == pytest.approx(capex + 24 * monthly)
    assert cost.tco_economic == pytest.approx(capex * 24 / 36 + 24 * monthly)
    assert cost.residual_book_value == pytest.approx(capex / 3)
    assert cost.cost_per_million_tokens == pytest.approx((capex * 24 / 36 + 24 * monthly) / (150 * 24))
    assert cost.cumulative_cash()[0] == pytest.approx(capex + monthly)
    assert len(cost.cumulative_cash()) == 24


def test_cloud_bills_gpu_nodes_per_minute_for_service_hours_plus_boot_when_not_always_on(figures: Figures) -> None:
    s, f = scenario(figures, gpu_type="L4", traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0,
                                                      "peak_concurrency": 10},
                    cloud={"always_on": False, "control_plane": "shared"}, overrides=CLOUD)
    cost = tco.cloud(s, f, {"sre": 0.25})

    minutes = math.ceil(10 * 60 + 7)  # one session a service day, boot billed from node creation
    billed_hours = 20 * minutes / 60
    gpu = 1 * billed_hours * 0.8
    system = 2 * 730 * 0.05
    people = 0.25 * 84000 / 12
    assert cost.sizing["billed_hours_per_node_month"] == pytest.approx(billed_hours)
    assert {i.name: i.monthly for i in cost.items} == pytest.approx({
        "GPU nodes (billed per minute)": gpu, "system pool": system, "control plane (shared)": 0.0,
        "egress (answers)": 0.0, "people (sre)": people})
    assert cost.upfront == 0 and cost.tco_cash == pytest.approx(24 * (gpu + system + people))


def test_a_dedicated_control_plane_adds_its_hourly_price_around_the_clock(figures: Figures) -> None:
    s, f = scenario(figures, gpu_type="L4", cloud={"always_on": True, "control_plane": "dedicated"},
                    overrides=CLOUD)
    cost = tco.cloud(s, f, {})
    lines = {i.name: i.monthly for i in cost.items}
    assert lines["control plane (dedicated)"] == pytest.approx(0.11 * 730)
    assert lines["GPU nodes (billed per minute)"] == pytest.approx(2 * 730 * 0.8)  # peak 70 -> 2 L4 nodes


def test_the_buy_baseline_prices_the_same_volume_at_the_api_rates(figures: Figures) -> None:
    s, f = scenario(figures, buy_api="scaleway-mistral-small-3.2", overrides={
        "buy.scaleway-mistral-small-3.2.eur_per_m_input": 0.15,
        "buy.scaleway-mistral-small-3.2.eur_per_m_output": 0.35,
        "buy.fte": 0.1, "people.mlops.loaded_eur_year": 90000})
    cost = tco.buy(s, f, tco.people_fte(s, f, "buy", None))
    api = 100 * 0.15 + 50 * 0.35
    people = 0.1 * 90000 / 12
    assert cost.monthly == pytest.approx(api + people)
    assert cost.tco_cash == pytest.approx(24 * (api + people))
    assert cost.cost_per_million_tokens == pytest.approx(24 * (api + people) / (150 * 24))


def test_zero_traffic_still_pays_the_reserved_gpu_and_has_no_cost_per_token(figures: Figures) -> None:
    s, f = scenario(figures, traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0,
                                      "peak_concurrency": 0}, overrides=ONPREM | CLOUD | {"buy.fte": 0.1})
    costs = tco.compute(s, f, {"onprem": {}, "cloud": {}})
    onprem = costs["onprem"]
    assert onprem.sizing["gpus"] == 1 and onprem.sizing["implied_utilisation"] == 0
    assert onprem.upfront == pytest.approx(12000 + 8000)
    power = {i.name: i.monthly for i in onprem.items}["power"]
    assert power == pytest.approx((500 + 350) * 0.1 / 1000 * 730 * 1.5 * 0.2)  # idle draw only
    assert {i.name: i.monthly for i in costs["buy"].items}["token API (scaleway-mistral-small-3.2)"] == 0
    assert all(c.cost_per_million_tokens is None for c in costs.values())
    assert "edge" not in costs  # no sites, no edge option


def test_one_edge_site_gets_devices_for_its_peak_and_one_sites_support(figures: Figures) -> None:
    s, f = scenario(figures, traffic={"input_tokens_per_month": 20_000_000, "output_tokens_per_month": 10_000_000,
                                      "peak_concurrency": 5}, edge={"sites": 1}, overrides=EDGE)
    cost = tco.edge(s, f, {"support": 0.01})

    devices = max(1, math.ceil(5 / 2), math.ceil(10e6 / (200 * 3600) / 20))  # 3, for the peak
    implied = 10e6 / (devices * 20 * 3600 * 730)
    draw_w = devices * (7 + (25 - 7) * implied)
    assert cost.sizing["devices"] == devices == 3
    assert cost.upfront == pytest.approx(3 * 249 * 0.9)
    assert {i.name: i.monthly for i in cost.items}["power"] == pytest.approx(draw_w / 1000 * 730 * 1.0 * 0.16)
    assert tco.scale_hours("edge", s, f) == {"support": 1 * 6}


def test_five_hundred_edge_sites_scale_capex_and_support_with_the_sites(figures: Figures) -> None:
    s, f = scenario(figures, traffic={"input_tokens_per_month": 1_000_000_000, "output_tokens_per_month": 500_000_000,
                                      "peak_concurrency": 1000},
                    service={"hours_per_day": 10, "days_per_month": 30}, edge={"sites": 500}, overrides=EDGE)
    cost = tco.edge(s, f, {})
    # Per site: peak 1000 / 500 = 2 -> 1 device of 2; volume 500M / (300 h x 3600) / 500 = 0.93 tok/s -> 1.
    assert cost.sizing["devices_per_site"] == 1 and cost.sizing["devices"] == 500
    assert cost.upfront == pytest.approx(500 * 249 * 0.9)
    assert tco.scale_hours("edge", s, f) == {"support": 500 * 6}
    fte = 500 * 6 / f.value("people.hours_per_fte_year")
    people = tco.edge(s, f, {"support": fte})
    assert {i.name: i.monthly for i in people.items}["people (support)"] == pytest.approx(fte * 42000 / 12)


def test_one_percent_gpu_utilisation_draws_little_more_than_idle_power(figures: Figures) -> None:
    s, f = scenario(figures, gpu_utilisation=0.01, overrides=ONPREM)
    cost = tco.onprem(s, f, {})
    assert cost.sizing["utilisation"] == 0.01
    power = {i.name: i.monthly for i in cost.items}["power"]
    assert power == pytest.approx((500 + 2 * 350) * (0.1 + 0.9 * 0.01) / 1000 * 730 * 1.5 * 0.2)


def test_on_call_and_a_users_own_fte_figure_replace_the_estimate(figures: Figures) -> None:
    s, f = scenario(figures, people={"fte": {"onprem": 2.0}, "on_call_24x7": True},
                    overrides={"people.oncall_24x7_fte": 0.5})
    fte = tco.people_fte(s, f, "onprem", {"sre": 0.3, "mlops": 0.1})
    assert fte == pytest.approx({"sre": 2.0 * 0.75 + 0.5, "mlops": 2.0 * 0.25})


def test_every_line_item_names_its_figures_and_flags_estimates(figures: Figures) -> None:
    s, f = scenario(figures)
    costs = tco.compute(s, f, {"onprem": {"sre": 0.3}, "cloud": {"sre": 0.2}})
    for cost in costs.values():
        for item in cost.items:
            assert item.figures and item.formula
            assert item.estimate == any(f.items[i].confidence == "L" for i in item.figures)
    assert "gpu.L40S.chassis_eur" in f.used


def test_an_override_of_an_unknown_figure_is_refused(figures: Figures) -> None:
    with pytest.raises(BurdenError, match=r"test.yaml: overrides.gpu.B200.card_eur: no such figure"):
        scenario(figures, overrides={"gpu.B200.card_eur": 1})
