"""People: upgrades a year as a driver, the source documents' staffing levels as FTE bands, and the edge fleet's
operating times from the scale model, each worked out by hand below."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from triptyque.burden import staffing, tco, units
from triptyque.burden.compare import compare
from triptyque.burden.decision import PEOPLE, decide
from triptyque.burden.edge_scale import load_scale
from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figures, public_source
from triptyque.burden.ledger import Ledger
from triptyque.burden.scenario import Option
from triptyque.burden.slo import continuity
from triptyque.burden.static import load_skills
from triptyque.burden.upgrades import upgrades

from .conftest import MODEL, deployment, scenario
from .test_tco import EDGE, ONPREM

UPKEEP = {"ops.upgrades_per_year": 12, "ops.upgrade_review_hours": 2, "k8s.image_pull_s": 80,
          "k8s.weights_loaded_s": 60, "k8s.engine_ready_s": 40, "people.hours_per_fte_year": 1600}
BANDS = {"staffing.low.fte_low": 0.05, "staffing.low.fte_high": 0.15, "staffing.low_to_medium.fte_low": 0.1,
         "staffing.low_to_medium.fte_high": 0.3, "staffing.medium.fte_low": 0.2, "staffing.medium.fte_high": 0.5,
         "staffing.high.fte_low": 0.5, "staffing.high.fte_high": 1.0,
         "staffing.high_in_volume.hours_per_site_year_low": 2,
         "staffing.high_in_volume.hours_per_site_year_high": 12}
# A small fleet's scale data in the layout the edge scale bench writes (triptyque/edge/scale.py): the upgrade
# measured on 1 node; fits as ``fixed + per_batch x ceil(N / batch) + per_node x N / parallelism``.
SCALE: dict[str, Any] = {
    "schema": 1,
    "measured": {"date": "2026-12-01", "command": "python -m bench --only edge-scale", "revision": "abc123def456",
                 "machine": "2 cores"},
    "settings": {"forks": 10, "serial": 10},
    "points": [{"operation": "upgrade", "nodes": 1, "unreachable": 0, "seconds": 40.0},
               {"operation": "kill", "nodes": 1, "unreachable": 0, "seconds": 0.51}],
    "fit": {"upgrade": {"fixed": 10, "per_batch": 30, "per_node": 0, "batch": 10, "parallelism": 10,
                        "max_relative_error": 0.1},
            "kill": {"fixed": 0.5, "per_batch": 0, "per_node": 0.01, "batch": None, "parallelism": 1,
                     "max_relative_error": 0.2}},
}
LIGHT = {"input_tokens_per_month": 2_000_000, "output_tokens_per_month": 1_000_000, "peak_concurrency": 2}


def scale_file(tmp_path: Path, data: dict[str, Any] = SCALE) -> Path:
    path = tmp_path / "edge-scale.json"
    path.write_text(json.dumps(data))
    return path


def test_upgrades_a_year_drive_the_sre_hours_of_an_option_without_a_measured_drill(figures: Figures) -> None:
    _s, f = scenario(figures, overrides=ONPREM | UPKEEP)
    found = upgrades("onprem", f, replicas=2)
    # 2 replicas replaced one at a time x (80 + 60 + 40) s = 360 s = 0.1 h; 12 x (2 h review + 0.1 h) = 25.2 h.
    assert found is not None and found.kind == "modelled"
    assert found.estimate_hours == pytest.approx(25.2) and found.toil(1600) == {}
    assert "ops.upgrades_per_year" in found.text() and "25.2 h/year" in found.text()
    _s, twice = scenario(figures, overrides=ONPREM | UPKEEP | {"ops.upgrades_per_year": 24})
    more = upgrades("onprem", twice, replicas=2)
    assert more is not None and more.estimate_hours == pytest.approx(50.4)
    # Above the source note's band the estimate is what the option is charged: twice the upgrades, 25.2 h more.
    mapping = staffing.load_staffing(ROOT / "burden/staffing.yaml")
    base = 0.9 * 1600  # an SRE estimate of 0.9 FTE before upgrades, inside the "high" band (0.5-1.0)
    at_12 = staffing.bound("onprem", {"sre": (base + 25.2) / 1600}, mapping, f, 0)
    at_24 = staffing.bound("onprem", {"sre": (base + 50.4) / 1600}, mapping, f, 0)
    assert (at_24.point["sre"] - at_12.point["sre"]) * 1600 == pytest.approx(25.2)
    assert upgrades("buy", f) is None  # the provider upgrades its own service


def test_a_measured_edge_upgrade_drill_is_the_rollout_when_there_is_no_scale_model(figures: Figures) -> None:
    _s, f = scenario(figures, edge={"sites": 2}, overrides=EDGE | UPKEEP)
    found = upgrades("edge", f, nodes=2, ledger=(360.0, "ledger #7 (2026-12-01T08:00:00Z, git abc)"))
    # 360 s x 12 = 1.2 h a year, measured (its own TCO line); the review, 12 x 2 h, goes to the estimate.
    assert found is not None and found.kind == "measured"
    [(key, fte)] = found.toil(1600).items()
    assert key.startswith(tco.TOIL) and "ledger #7" in key and fte == pytest.approx(1.2 / 1600)
    assert found.estimate_hours == pytest.approx(24)
    unknown = upgrades("edge", f, nodes=2)
    assert unknown is not None and unknown.kind == "none" and "edge.sre_hours_per_site_year" in unknown.rollout
    assert unknown.estimate_hours == pytest.approx(24)


def test_the_scale_model_times_one_and_five_hundred_edge_sites(figures: Figures, tmp_path: Path) -> None:
    scale = load_scale(scale_file(tmp_path), "burden/edge-scale.json")
    assert scale is not None
    _s, f = scenario(figures, edge={"sites": 1}, overrides=EDGE | UPKEEP)
    one = upgrades("edge", f, nodes=1, scale=scale)
    # 1 node was measured: 40 s x 12 = 480 s a year, a measured line citing the file, its date and revision.
    assert one is not None and one.kind == "measured"
    [(key, fte)] = one.toil(1600).items()
    assert fte == pytest.approx(480 / 3600 / 1600) and "edge-scale.json" in key and "abc123def456" in key
    many = upgrades("edge", f, nodes=500, scale=scale)
    # 500 nodes: 10 + 30 x ceil(500 / 10) = 1,510 s, modelled +-10 %; 12 x (2 h + 1,510 / 3,600 h) = 29.03 h.
    assert many is not None and many.kind == "modelled" and many.toil(1600) == {}
    assert many.rollout_seconds == pytest.approx(1510) and many.relative_error == pytest.approx(0.1)
    assert many.estimate_hours == pytest.approx(12 * (2 + 1510 / 3600))
    assert "+-10%" in many.text()
    # The fleet kill reaches 500 sites in 0.5 + 0.01 x 500 / 1 = 5.5 s (modelled +-20 %): the continuity lens.
    kill = scale.predict("kill", 500)
    assert (kill.seconds, kill.low, kill.high, kill.kind) == pytest.approx((5.5, 4.4, 6.6, "modelled"))
    s, f = scenario(figures, edge={"sites": 500}, traffic=LIGHT, overrides=EDGE)
    cost = tco.edge(s, f, {})
    k = continuity("edge", s, f, cost, slo=0.995, cloud_repair_seconds=None, cloud_control_plane_sla="",
                   fleet_kill=(kill.seconds, scale.describe("kill", 500)))
    assert k.kill_reach_seconds == pytest.approx(5.5) and any("modelled for 500 node(s)" in p for p in k.single_points)


def test_the_source_documents_levels_floor_each_domain_and_span_its_range(figures: Figures) -> None:
    mapping = staffing.load_staffing(ROOT / "burden/staffing.yaml")
    _s, f = scenario(figures, overrides=BANDS | {"people.hours_per_fte_year": 1600})
    toil = f"{tco.TOIL}upgrade x 12/year, ledger #7"
    low = staffing.bound("onprem", {"sre": 0.3, "mlops": 0.05, toil: 0.01}, mapping, f, 0)
    # On-prem is "Élevé" in every domain: 0.5-1.0 FTE; estimates under 0.5 are raised to it, measured toil held.
    assert low.point == pytest.approx({"sre": 0.5, "mlops": 0.5, "support": 0.5, toil: 0.01})
    assert low.low["sre"] == 0.5 and low.high["sre"] == 1.0 and low.raised == {"sre": 0.3, "mlops": 0.05,
                                                                                "support": 0.0}
    high = staffing.bound("onprem", {"sre": 1.2}, mapping, f, 0)
    # Above the band: kept, its range max(0.5, 1.2 x 0.65) = 0.78 to max(1.0, 1.2 x 1.35) = 1.62.
    assert (high.low["sre"], high.point["sre"], high.high["sre"]) == pytest.approx((0.78, 1.2, 1.62))
    # Edge support is "Élevée en volume": 2-12 h a site a year, never below the "low" band (0.05-0.15 FTE).
    one = staffing.bound("edge", {}, mapping, f, 1)
    assert (one.low["support"], one.high["support"]) == pytest.approx((0.05, 0.15))
    many = staffing.bound("edge", {}, mapping, f, 500)
    assert (many.low["support"], many.high["support"]) == pytest.approx((500 * 2 / 1600, 500 * 12 / 1600))
    assert many.bands["support"].quote.startswith("Élevée en volume")
    # The managed API: "Moyen" MLOps (0.2-0.5) raises buy.fte's 0.1; infra is our reading ("low"), said so.
    buy = staffing.bound("buy", {"mlops": 0.1}, mapping, f, 0)
    assert buy.point == pytest.approx({"sre": 0.05, "mlops": 0.2, "support": 0.1})
    assert buy.bands["sre"].reading and "not the note's level" in buy.bands["sre"].reading


def test_the_total_cost_range_moves_people_across_their_bands(figures: Figures) -> None:
    s, f = scenario(figures, overrides=ONPREM | BANDS)
    mapping = staffing.load_staffing(ROOT / "burden/staffing.yaml")
    b = staffing.bound("onprem", {"sre": 0.3}, mapping, f, 0)
    people: dict[Option, dict[str, float]] = {"onprem": tco.people_fte(s, f, "onprem", b.point)}
    cost = tco.onprem(s, f, people["onprem"])
    bounds: dict[Option, tuple[dict[str, float], dict[str, float]]] = {
        "onprem": (tco.people_fte(s, f, "onprem", b.low), tco.people_fte(s, f, "onprem", b.high))}
    d = decide(s, f, people, deployment(), {"onprem": cost}, bounds)
    [swing] = [w for w in d.sensitivity["onprem"] if w.figure == PEOPLE]
    # 1.5 FTE at the point and the low end (every domain raised to 0.5), 3.0 FTE at the high end (1.0 each):
    # 0.5 more FTE of each role for 24 months.
    extra = 0.5 * (84000 + 90000 + f.value("people.support.loaded_eur_year")) * 2
    assert swing.total_at_low == pytest.approx(cost.tco_economic)
    assert swing.total_at_high == pytest.approx(cost.tco_economic + extra)
    assert d.ranges["onprem"].high >= cost.tco_economic + extra


def test_every_new_figure_has_a_unit_a_valid_range_and_a_public_source(figures: Figures) -> None:
    new = [i for i in figures.items if i.startswith("staffing.")] + ["ops.upgrade_review_hours",
                                                                    "ops.upgrades_per_year"]
    assert len(new) == 12
    for figure_id in new:
        f = figures.items[figure_id]
        assert units.problem(f.value, f.unit) is None and f.date
        assert public_source(f.source) == f.source
        if f.confidence == "L":  # no public number: the reason is said
            assert f.source.startswith(("estimate", "derived")), figure_id
    with pytest.raises(BurdenError, match=r"overrides.staffing.high.fte_low: -1 is out of range for FTE"):
        scenario(figures, overrides={"staffing.high.fte_low": -1})
    with pytest.raises(BurdenError, match=r"overrides.ops.upgrade_review_hours: 5_000 is out of range"):
        scenario(figures, overrides={"ops.upgrade_review_hours": 5000})
    _s, crossed = scenario(figures, overrides={"staffing.medium.fte_low": 0.6})  # above its high end, 0.5
    with pytest.raises(BurdenError, match=r"staffing.medium.fte_low \(0.6\) is above staffing.medium.fte_high"):
        staffing.bound("cloud", {}, staffing.load_staffing(ROOT / "burden/staffing.yaml"), crossed, 0)


def test_a_staffing_file_citing_a_local_file_or_an_unknown_level_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "staffing.yaml"
    bad.write_text("document: note\noptions:\n  edge:\n    infra:\n      level: huge\n      section: s\n"
                   "      quote: q\n      references: [../shared/seeds/000.txt]\n")
    with pytest.raises(BurdenError) as caught:
        staffing.load_staffing(bad)
    lines = caught.value.problems
    assert any("options.edge.infra.level" in line for line in lines)
    assert any("options.edge.infra.references:" in line and "local file" in line for line in lines)
    with pytest.raises(BurdenError, match="file not found"):
        staffing.load_staffing(tmp_path / "missing.yaml")


def test_a_broken_scale_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "edge-scale.json"
    path.write_text("{not json")
    with pytest.raises(BurdenError) as caught:
        load_scale(path, "burden/edge-scale.json")
    [line] = caught.value.problems
    assert "burden/edge-scale.json" in line and str(tmp_path) not in line
    assert load_scale(tmp_path / "absent.json") is None


def _compare(figures: Figures, tmp_path: Path, sites: int, scale: Path) -> Any:
    s, f = scenario(figures, edge={"sites": sites}, traffic=LIGHT, options=["edge", "buy"], model=MODEL)
    return compare(s, f, load_skills(ROOT / "burden/skills.yaml"), root=ROOT, ledger=Ledger(tmp_path / "l.sqlite"),
                   scenario_path=Path("test.yaml"), spec_version=None, scale_path=scale)


def test_the_report_json_carries_the_levels_the_upgrades_and_the_fleet_times(figures: Figures,
                                                                            tmp_path: Path) -> None:
    path = scale_file(tmp_path)
    c = _compare(figures, tmp_path, 500, path)
    data = json.loads(json.dumps(c.as_dict()))
    # The mapping, visible: each option's level, passage, references and band; every level's FTE range.
    edge = data["staffing"]["per_option"]["edge"]["bands"]["support"]
    assert edge["level"] == "high_in_volume" and edge["quote"].startswith("Élevée en volume")
    assert edge["references"][0].startswith("https://")
    assert set(data["staffing"]["levels"]) == {"low", "low_to_medium", "medium", "high", "high_in_volume"}
    assert data["people"]["edge"]["levels"]["user support and integration"]["level"] == "high_in_volume"
    # 500 sites x 1 device: the upgrade is modelled for 500 nodes with its error; the kill reach in continuity.
    up = data["people"]["edge"]["upgrades"]
    assert up["kind"] == "modelled" and up["rollout_seconds"] == pytest.approx(1510)
    assert data["edge_fleet"]["operations"]["kill"]["seconds"] == pytest.approx(5.5)
    assert data["continuity"]["edge"]["kill_reach_seconds"] == pytest.approx(5.5)
    assert any("edge fleet of 500 node(s), upgrade" in n for n in data["notes"])
    one = _compare(figures, tmp_path, 1, path)
    [line] = [i for i in one.costs["edge"].items if i.measured]
    assert "edge-scale.json" in line.measured and math.isclose(
        line.monthly, 480 / 3600 / one.figures.value("people.hours_per_fte_year")
        * one.figures.value("people.sre.loaded_eur_year") / 12)
    without = _compare(figures, tmp_path, 1, tmp_path / "absent.json")
    assert any("No edge scale model" in n and "today's figures" in n for n in without.notes)
    assert without.people["edge"]["upgrades"]["kind"] == "none"
