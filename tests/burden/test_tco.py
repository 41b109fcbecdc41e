"""The cost model against scenarios computed by hand, the arithmetic written out below.

Every scenario pins the figures it uses through ``overrides``, so the expected values
read from this file alone and do not move when a default in burden/figures.yaml does.
The model served is conftest's MODEL: 7 B parameters in 4 bits = 3.5 GB of weights,
x 1.1 runtime overhead = 3.85 GB; a 4,096-token context of KV cache is 0.537 GB and a
1,024-token request 0.134 GB.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from triptyque.burden import tco
from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figures

from .conftest import MODEL, deployment, scenario

HOURS = 730
WEIGHTS_NEED = 7 * 0.5 * 1.1
REQUEST_GB = 1024 * 131_072 / 1e9
SIZING = {"gpu.memory_utilization": 0.9, "model.runtime_overhead_ratio": 0.1, "model.reference_weights_gb": 3.5,
          "gpu.max_concurrency": 64}
ONPREM = SIZING | {
    "time.hours_per_month": HOURS, "gpu.L40S.card_eur": 8000, "gpu.L40S.chassis_eur": 12000,
    "gpu.L40S.gpus_per_server": 4, "gpu.L40S.memory_gb": 48, "gpu.L40S.board_w": 350,
    "gpu.L40S.output_tokens_per_second": 6000, "gpu.L40S.server_u": 2, "onprem.server_overhead_w": 500,
    "power.idle_fraction": 0.1, "onprem.pue": 1.5, "power.onprem.eur_per_kwh": 0.2,
    "onprem.colocation_eur_per_rack_month": 1000, "onprem.rack_units": 42, "onprem.rack_power_kw": 8,
    "onprem.maintenance_ratio_per_year": 0.1, "onprem.depreciation_years": 3, "onprem.ups_eur_per_kw": 500,
    "onprem.switch_eur": 3000, "onprem.switch_ports": 24, "people.sre.loaded_eur_year": 84000,
    "people.mlops.loaded_eur_year": 90000, "traffic.egress_bytes_per_output_token": 8, "onprem.egress_eur_per_gb": 0,
}
SXM = ONPREM | {"fx.usd_eur": 0.9, "gpu.H100-SXM.server_usd": 260_000, "gpu.H100-SXM.gpus_per_server": 8,
                "gpu.H100-SXM.memory_gb": 80, "gpu.H100-SXM.output_tokens_per_second": 20_000,
                "gpu.H100-SXM.server_w": 10_200, "gpu.H100-SXM.server_u": 8}
CLOUD = SIZING | {
    "time.hours_per_month": HOURS, "gpu.L4.memory_gb": 24, "gpu.L4.output_tokens_per_second": 2000,
    "cloud.node.L4-1-24G.gpus": 1, "cloud.node.L4-1-24G.eur_per_hour": 0.8, "cloud.gpu_node_boot_minutes": 7,
    "cloud.node.PRO2-XS.eur_per_hour": 0.11, "cloud.block_storage_eur_per_gb_month": 0.086,
    "cloud.load_balancer_eur_per_month": 8.99, "cloud.control_plane.shared_eur_per_hour": 0,
    "cloud.control_plane.dedicated_eur_per_hour": 0.11, "cloud.egress_eur_per_gb": 0,
    "traffic.egress_bytes_per_output_token": 8, "people.sre.loaded_eur_year": 84000,
    "cloud.public_gateway.VPC-GW-S.eur_per_hour": 0.01, "cloud.flexible_ip_eur_per_hour": 0.004,
}
EDGE = SIZING | {
    "time.hours_per_month": HOURS, "edge.sre_hours_per_site_year": 4, "people.mlops_hours_per_model_year": 80,
    "fx.usd_eur": 0.9, "edge.device_usd": 249, "edge.enclosure_storage_usd": 100, "edge.spare_ratio": 0.1,
    "edge.device_busy_w": 25,
    "edge.device_idle_w": 7, "edge.device_output_tokens_per_second": 20, "edge.device_max_concurrency": 2,
    "edge.device_memory_gb": 8, "edge.reference_weights_gb": 3.5, "edge.pue": 1.0, "power.edge.eur_per_kwh": 0.16,
    "edge.depreciation_years": 3, "edge.support_hours_per_site_year": 6, "people.support.loaded_eur_year": 42000,
}
VOLUME_GB = 200 * 2**30 / 1e9  # the stack's 200Gi model cache, priced per GB


def lines(cost: tco.OptionCost) -> dict[str, float]:
    return {i.name: i.monthly for i in cost.items}


def test_one_server_in_a_rack_pays_its_share_of_the_rack_not_a_whole_one(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM)
    cost = tco.onprem(s, f, {"sre": 0.5})

    # Per L40S: 48 GB x 0.9 = 43.2 GB holds 3.85 GB + one context; (43.2 - 3.85) / 0.134 = 293 requests, capped
    # at 64. Peak 70 / 64 -> 2 replicas of 1 GPU; volume 50M / (200 h x 3600 s) = 69 tok/s < 6,000 -> 1.
    assert cost.sizing["replicas"] == 2 and cost.sizing["gpus"] == 2 and cost.sizing["servers"] == 1
    assert cost.sizing["requests_per_replica"] == min(math.floor((48 * 0.9 - WEIGHTS_NEED) / REQUEST_GB), 64) == 64
    capex = 1 * 12000 + 2 * 8000
    maintenance = capex * 0.1 / 12
    # Colocation share: space 1 x 2U / 42U = 0.048, power (500 + 2 x 350) W = 1.2 kW / 8 kW = 0.15 -> 0.15 rack.
    hosting = max(2 / 42, 1.2 / 8) * 1000
    people = 0.5 * 84000 / 12
    assert lines(cost) == pytest.approx({"maintenance (hardware support contract)": maintenance,
                                         "hosting (colocation, power included)": hosting, "egress (answers)": 0.0,
                                         "people (sre)": people, "servers and GPUs": 0.0})
    assert hosting == pytest.approx(150) and hosting < 1000  # not a whole rack
    assert not any("power" in i.name and "included" not in i.name for i in cost.items)  # one facility model
    monthly = maintenance + hosting + people
    assert cost.upfront == pytest.approx(capex)
    assert cost.tco_cash == pytest.approx(capex + 24 * monthly)
    assert cost.tco_economic == pytest.approx(capex * 24 / 36 + 24 * monthly)
    assert cost.residual_book_value == pytest.approx(capex / 3)
    assert cost.cost_per_million_tokens == pytest.approx((capex * 24 / 36 + 24 * monthly) / (150 * 24))


def test_a_rack_share_follows_space_when_the_rack_has_power_to_spare(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM | {"onprem.rack_power_kw": 50})
    hosting = lines(tco.onprem(s, f, {}))["hosting (colocation, power included)"]
    assert hosting == pytest.approx(max(2 / 42, 1.2 / 50) * 1000) == pytest.approx(2 / 42 * 1000)


def test_a_server_room_pays_power_times_pue_and_no_rent(figures: Figures) -> None:
    s, f = scenario(figures, onprem={"facility": "server_room"}, overrides=ONPREM)
    cost = tco.onprem(s, f, {})
    implied = 50e6 / (2 * 6000 * 3600 * 730)
    power = (1 * 500 + 2 * 350) * (0.1 + 0.9 * implied) / 1000 * 730 * 1.5 * 0.2
    assert lines(cost) == pytest.approx({"servers and GPUs": 0.0, "maintenance (hardware support contract)":
                                         28000 * 0.1 / 12, "power (server room)": power, "egress (answers)": 0.0,
                                         "UPS and switch (server room)": 0.0})
    assert cost.sizing["implied_utilisation"] == pytest.approx(implied)
    # The room's own UPS (1.2 kW x 500 EUR/kW) and one 24-port switch, which a colocation would provide.
    assert cost.upfront == pytest.approx(28000 + 1.2 * 500 + 1 * 3000)


def test_an_eight_gpu_server_is_bought_whole_and_pays_its_power_share_of_a_rack(figures: Figures) -> None:
    s, f = scenario(figures, gpu_type="H100-SXM", overrides=SXM)
    cost = tco.onprem(s, f, {})
    # 2 replicas of 1 GPU fit one HGX server, which comes with its 8 GPUs: 260,000 USD x 0.9.
    assert cost.sizing["replicas"] == 2 and cost.sizing["servers"] == 1 and cost.sizing["gpus"] == 8
    capex = 260_000 * 0.9
    assert cost.upfront == pytest.approx(capex)
    # Space 8U / 42U = 0.19 rack, power 10.2 kW / 8 kW = 1.275 racks: the power share decides.
    assert lines(cost) == pytest.approx({"servers (whole, GPUs included)": 0.0,
                                         "maintenance (hardware support contract)": capex * 0.1 / 12,
                                         "hosting (colocation, power included)": 1.275 * 1000,
                                         "egress (answers)": 0.0})
    # Peak 520 -> ceil(520 / 64) = 9 replicas -> 2 whole servers, 16 GPUs.
    s, f = scenario(figures, gpu_type="H100-SXM", overrides=SXM,
                    traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0, "peak_concurrency": 520})
    big = tco.onprem(s, f, {})
    assert (big.sizing["replicas"], big.sizing["servers"], big.sizing["gpus"]) == (9, 2, 16)
    assert big.upfront == pytest.approx(2 * capex)


def _cloud(figures: Figures, gpu_min: int, **fields: object) -> tco.OptionCost:
    s, f = scenario(figures, gpu_type="L4", overrides=CLOUD, **({
        "traffic": {"input_tokens_per_month": 0, "output_tokens_per_month": 0, "peak_concurrency": 10},
        "cloud": {"always_on": False, "control_plane": "shared"}} | fields))
    return tco.cloud(s, f, {"sre": 0.25}, deployment(gpu_min=gpu_min))


def test_cloud_is_billed_around_the_clock_while_the_stack_keeps_a_gpu_node(figures: Figures) -> None:
    always = _cloud(figures, gpu_min=1)  # the scenario asks for office hours, the stack keeps minSize 1
    office = _cloud(figures, gpu_min=0)  # a pool that can scale to 0: office hours are possible

    system = 2 * 730 * 0.11  # systemPool.minSize 2 x PRO2-XS at its full price
    volume = VOLUME_GB * 0.086
    people = 0.25 * 84000 / 12
    shared = {"system pool (PRO2-XS)": system, "model-cache volume (sbs-default)": volume, "load balancer": 8.99,
              "control plane (shared)": 0.0, "egress (answers)": 0.0, "people (sre)": people,
              "public gateway (VPC-GW-S) and its IP": 730 * (0.01 + 0.004)}
    assert lines(always) == pytest.approx(shared | {"GPU nodes (L4-1-24G, billed per minute)": 1 * 730 * 0.8})
    assert any("billed around the clock" in n for n in always.notes)

    billed_hours = 20 * math.ceil(10 * 60 + 7) / 60  # one session a service day, boot billed from creation
    assert office.sizing["billed_hours_per_node_month"] == pytest.approx(billed_hours)
    assert lines(office) == pytest.approx(shared | {"GPU nodes (L4-1-24G, billed per minute)": billed_hours * 0.8})
    assert always.tco_cash - office.tco_cash == pytest.approx(24 * (730 - billed_hours) * 0.8)


def test_cloud_needs_more_nodes_than_the_pool_may_hold_and_says_so(figures: Figures) -> None:
    # Peak 200 / 64 requests per L4 -> 4 replicas, 4 nodes; the stack's gpuPool.maxSize is 2.
    with pytest.raises(tco.Unserved, match=r"gpuPool.maxSize 2 cannot hold the 4 L4-1-24G nodes"):
        _cloud(figures, gpu_min=1, traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0,
                                            "peak_concurrency": 200})


def test_a_dedicated_control_plane_adds_its_hourly_price_around_the_clock(figures: Figures) -> None:
    cost = _cloud(figures, gpu_min=1, cloud={"always_on": True, "control_plane": "dedicated"})
    assert lines(cost)["control plane (dedicated)"] == pytest.approx(0.11 * 730)


def test_a_70b_model_does_not_fit_one_l4_and_is_not_priced_there(figures: Figures) -> None:
    big = MODEL | {"name": "llama-70b", "parameters_billion": 70, "quantisation": "bf16"}
    s, f = scenario(figures, model=big, gpu_type="L4", overrides=CLOUD | {"gpu.L4.gpus_per_server": 4})
    # 70 B x 2 bytes = 140 GB x 1.1 = 154 GB + 0.537 GB of context > 24 GB x 0.9 = 21.6 GB on one L4 node.
    need = 140 * 1.1 + 4096 * 131_072 / 1e9
    with pytest.raises(tco.Unserved) as caught:
        tco.cloud(s, f, {}, deployment())
    assert f"needs {need:,.1f} GB" in caught.value.reason and "1 x 24 GB x 0.9 = 21.6 GB" in caught.value.reason
    unserved: dict[str, str] = {}
    costs = tco.compute(s, f, {}, deployment(), unserved)  # type: ignore[arg-type]
    assert "cloud" not in costs and "onprem" not in costs and "buy" in costs  # 4 x 21.6 = 86.4 GB < 154.5 either
    assert set(unserved) == {"cloud", "onprem"}
    # An 8 x 80 GB HGX server holds it on 4 GPUs (2 x 72 GB = 144 GB is too little).
    s, f = scenario(figures, model=big, gpu_type="H100-SXM", overrides=SXM)
    assert tco.onprem(s, f, {}).sizing["devices_per_replica"] == 4


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


def test_any_providers_price_can_be_given_in_the_scenario(figures: Figures) -> None:
    s, f = scenario(figures, buy_api={"name": "acme-24b", "eur_per_m_input": 0.2, "eur_per_m_output": 0.6,
                                      "source": "acme.example/pricing", "date": "2026-11-01"},
                    overrides={"buy.fte": 0.1, "people.mlops.loaded_eur_year": 90000})
    cost = tco.buy(s, f, tco.people_fte(s, f, "buy", None))
    assert lines(cost)["token API (acme-24b)"] == pytest.approx(100 * 0.2 + 50 * 0.6)
    price = f.items["buy.acme-24b.eur_per_m_output"]
    assert price.overridden and price.source == "acme.example/pricing" and price.origin == "user override"


def test_an_api_with_no_price_is_refused_with_the_known_ones(figures: Figures) -> None:
    with pytest.raises(BurdenError, match=r"test.yaml: buy_api: no prices for 'acme' in the figures file; use one of"):
        scenario(figures, buy_api="acme")


def test_zero_traffic_still_pays_the_reserved_gpu_and_has_no_cost_per_token(figures: Figures) -> None:
    s, f = scenario(figures, traffic={"input_tokens_per_month": 0, "output_tokens_per_month": 0,
                                      "peak_concurrency": 0}, onprem={"facility": "server_room"},
                    overrides=ONPREM | CLOUD | {"buy.fte": 0.1})
    costs = tco.compute(s, f, {"onprem": {}, "cloud": {}}, deployment())
    onprem = costs["onprem"]
    assert onprem.sizing["gpus"] == 1 and onprem.sizing["implied_utilisation"] == 0
    assert onprem.upfront == pytest.approx(12000 + 8000 + (500 + 350) / 1000 * 500 + 3000)  # + UPS and switch
    assert lines(onprem)["power (server room)"] == pytest.approx((500 + 350) * 0.1 / 1000 * 730 * 1.5 * 0.2)
    assert lines(costs["buy"])["token API (scaleway-mistral-small-3.2)"] == 0
    assert costs["cloud"].sizing["nodes"] == 1
    assert all(c.cost_per_million_tokens is None for c in costs.values())
    assert "edge" not in costs  # no sites, no edge option


def test_one_edge_site_gets_devices_for_its_peak_and_one_sites_support(figures: Figures) -> None:
    s, f = scenario(figures, traffic={"input_tokens_per_month": 20_000_000, "output_tokens_per_month": 10_000_000,
                                      "peak_concurrency": 5}, edge={"sites": 1}, overrides=EDGE)
    cost = tco.edge(s, f, {"support": 0.01})
    # 8 GB x 0.9 = 7.2 GB holds 3.85 + 0.537 GB; requests min(floor((7.2 - 3.85) / 0.134) = 24, 2) = 2.
    devices = max(1, math.ceil(5 / 2), math.ceil(10e6 / (200 * 3600) / 20))  # 3, for the peak
    implied = 10e6 / (devices * 20 * 3600 * 730)
    draw_w = devices * (7 + (25 - 7) * implied)
    assert cost.sizing["devices"] == devices == 3
    # 3 devices with their case and SSD, and ceil(3 x 0.1) = 1 spare: 4 x (249 + 100) USD x 0.9.
    assert cost.sizing["spares"] == 1
    assert cost.upfront == pytest.approx((3 + 1) * (249 + 100) * 0.9)
    assert lines(cost)["power"] == pytest.approx(draw_w / 1000 * 730 * 1.0 * 0.16)
    assert tco.scale_hours("edge", s, f) == {"support": 1 * 6, "sre": 1 * 4, "mlops": 80}


def test_five_hundred_edge_sites_scale_capex_and_support_with_the_sites(figures: Figures) -> None:
    s, f = scenario(figures, traffic={"input_tokens_per_month": 1_000_000_000, "output_tokens_per_month": 500_000_000,
                                      "peak_concurrency": 1000},
                    service={"hours_per_day": 10, "days_per_month": 30}, edge={"sites": 500}, overrides=EDGE)
    cost = tco.edge(s, f, {})
    # Per site: peak 1000 / 500 = 2 -> 1 device of 2; volume 500M / (300 h x 3600) / 500 = 0.93 tok/s -> 1.
    assert cost.sizing["devices_per_site"] == 1 and cost.sizing["devices"] == 500
    assert cost.sizing["spares"] == 50
    assert cost.upfront == pytest.approx((500 + 50) * (249 + 100) * 0.9)
    # Support and the SRE's fleet work grow with the sites (20 and 50 sites do not cost the same); the model's
    # lifecycle does not.
    assert tco.scale_hours("edge", s, f) == {"support": 500 * 6, "sre": 500 * 4, "mlops": 80}
    fte = 500 * 6 / f.value("people.hours_per_fte_year")
    people = tco.edge(s, f, {"support": fte})
    assert lines(people)["people (support)"] == pytest.approx(fte * 42000 / 12)


def test_a_model_too_big_for_the_edge_device_is_not_priced_there(figures: Figures) -> None:
    s, f = scenario(figures, model=MODEL | {"parameters_billion": 24}, edge={"sites": 3}, overrides=EDGE)
    with pytest.raises(tco.Unserved, match=r"at most 1 x 8 GB x 0.9 = 7.2 GB"):
        tco.edge(s, f, {})


def test_one_percent_gpu_utilisation_draws_little_more_than_idle_power(figures: Figures) -> None:
    s, f = scenario(figures, gpu_utilisation=0.01, onprem={"facility": "server_room"}, overrides=ONPREM)
    cost = tco.onprem(s, f, {})
    assert cost.sizing["utilisation"] == 0.01
    power = lines(cost)["power (server room)"]
    assert power == pytest.approx((500 + 2 * 350) * (0.1 + 0.9 * 0.01) / 1000 * 730 * 1.5 * 0.2)


def test_on_call_and_a_users_own_fte_figure_replace_the_estimate(figures: Figures) -> None:
    s, f = scenario(figures, people={"fte": {"onprem": 2.0}, "on_call_24x7": True},
                    overrides={"people.oncall_24x7_fte": 0.5})
    fte = tco.people_fte(s, f, "onprem", {"sre": 0.3, "mlops": 0.1})
    assert fte == pytest.approx({"sre": 2.0 * 0.75 + 0.5, "mlops": 2.0 * 0.25})


def test_every_line_item_names_its_figures_and_flags_estimates(figures: Figures) -> None:
    s, f = scenario(figures)
    costs = tco.compute(s, f, {"onprem": {"sre": 0.3}, "cloud": {"sre": 0.2}}, deployment())
    assert {"onprem", "cloud", "buy"} <= set(costs)
    for cost in costs.values():
        for item in cost.items:
            assert item.figures and item.formula
            assert item.estimate == any(f.items[i].confidence == "L" for i in item.figures)
    assert "gpu.L40S.chassis_eur" in f.used


def test_an_override_of_an_unknown_figure_is_refused(figures: Figures) -> None:
    with pytest.raises(BurdenError, match=r"test.yaml: overrides.gpu.B200.card_eur: no such figure"):
        scenario(figures, overrides={"gpu.B200.card_eur": 1})


def test_a_24x7_rota_the_team_cannot_staff_caps_run_feasibility(figures: Figures) -> None:
    from triptyque.burden.scorecard import run_score

    s, _f = scenario(figures, people={"fte_available": 3, "on_call_24x7": True})
    # 3 FTE available for 1 FTE needed would score 5, but a 24/7 rota needs 8 people (Google SRE book): 2.
    capped = run_score(1.0, s, skills=4, rota_people=8)
    assert capped.score == 2 and "needs 8 people" in capped.inputs["24/7 on-call rota"]
    s, _f = scenario(figures, people={"fte_available": 9, "on_call_24x7": True})
    assert run_score(1.0, s, skills=4, rota_people=8).score == 5


def test_an_unreadable_cloud_stack_leaves_the_cloud_unpriced_with_the_reason(figures: Figures, tmp_path: Path) -> None:
    from triptyque.burden.deployed import read_cloud_deployment

    (tmp_path / "Pulumi.cloud.yaml").write_text("config:\n  triptyque:target: cloud\n  triptyque:colour: blue\n")
    broken = read_cloud_deployment(tmp_path)
    assert broken.problem and "colour" in broken.problem
    s, f = scenario(figures)
    unserved: dict[str, str] = {}
    costs = tco.compute(s, f, {}, broken, unserved)  # type: ignore[arg-type]
    assert "cloud" not in costs and unserved["cloud"].startswith("the cloud stack cannot be read: ")
    assert {"onprem", "buy"} <= set(costs)


def test_every_self_run_option_carries_the_models_lifecycle_and_onprem_its_servers(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM | {"people.mlops_hours_per_model_year": 80,
                                                 "burden.hours_per_gpu_server_year": 40})
    assert tco.scale_hours("onprem", s, f) == {"mlops": 80, "sre": 1 * 40}  # one server (2 GPUs)
    assert tco.scale_hours("cloud", s, f) == {"mlops": 80}  # the provider runs the machines
    assert tco.scale_hours("buy", s, f) == {}  # buy.fte carries the API's integration


def test_a_measured_edge_upgrade_becomes_a_measured_toil_line(figures: Figures) -> None:
    from triptyque.burden.compare import DrillView, measured_toil

    s, f = scenario(figures, edge={"sites": 2}, overrides=EDGE | {
        "ops.upgrades_per_year": 12, "people.hours_per_fte_year": 1600, "people.sre.loaded_eur_year": 80_000})
    upgrade = DrillView("edge", "upgrade", True, "ledger #7 (2026-12-01T08:00:00Z, git abc)",
                        {"applied": {"at": 100.0}, "serving": {"at": 360.0}}, {}, 1, entry_id=7)
    toil = measured_toil({"edge": {"upgrade": upgrade}}, f)
    # 360 s from start to serving x 12 upgrades a year = 1.2 h a year = 1.2 / 1,600 FTE.
    [(key, fte)] = toil["edge"].items()
    assert fte == pytest.approx(1.2 / 1600) and key.startswith(tco.TOIL) and "ledger #7" in key
    cost = tco.edge(s, f, tco.people_fte(s, f, "edge", {"support": 0.01} | toil["edge"]))
    [line] = [i for i in cost.items if i.measured]
    assert line.measured is not None and "ledger #7" in line.measured
    assert line.monthly == pytest.approx(1.2 / 1600 * 80_000 / 12)
    assert measured_toil({"edge": {"upgrade": DrillView("edge", "upgrade", False, "figures", {}, {}, 0)}}, f) == {}
    mine, f = scenario(figures, edge={"sites": 2}, people={"fte": {"edge": 0.5}}, overrides=EDGE)
    assert tco.people_fte(mine, f, "edge", {"support": 0.01} | toil["edge"]) == {"support": 0.5}
