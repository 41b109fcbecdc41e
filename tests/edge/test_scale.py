"""Edge at scale: the harness on eight fake-engine nodes, and the model fitted to the curves.

The fleet test boots eight test-fleet nodes with the ``fake`` engine profile (the real
gateway, units and roles; bench/fake_engine.py instead of vLLM), takes one offline and runs
the first converge: the run must name that node and converge the seven others. The 2-32
node curves belong to ``make bench`` (bench/edge_scale.py), not to the suite.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.conftest import CACHE
from tests.support import ROOT
from triptyque.edge.scale import OPERATIONS, Point, ScaleModel, fit_operation
from triptyque.errors import TargetError

SHIPPED = ROOT / "burden" / "edge-scale.json"
NODES = 8


# ---- the model (pure) ---------------------------------------------------------------------


def test_the_fit_recovers_a_known_model_exactly():
    # seconds = 20 + 7 * ceil(N / 4) + 3 * N / 10 for the upgrade; 5 + 0.5 * N / 10 for the rest.
    settings = {"forks": 10, "serial": 4}
    points = []
    for n in (2, 4, 8, 16, 32):
        for operation in OPERATIONS:
            if operation == "upgrade":
                seconds = 20 + 7 * math.ceil(n / 4) + 3 * n / 10
            elif operation in ("kill", "resume"):
                seconds = 0.5 + 0.01 * n
            else:
                seconds = 5 + 0.5 * n / 10
            points.append(Point(operation, n, 0, seconds))
    model = ScaleModel.fit(points, settings)
    upgrade = model.fits["upgrade"]
    assert (upgrade.fixed, upgrade.per_batch, upgrade.per_node) == pytest.approx((20, 7, 3), abs=1e-6)
    assert model.fits["kill"].per_node == pytest.approx(0.01, abs=1e-9)
    assert model.fits["converge"].per_batch == 0
    assert all(fit.max_relative_error < 1e-6 for fit in model.fits.values())
    prediction = model.predict("upgrade", 500)
    assert prediction.kind == "modelled"
    assert prediction.seconds == pytest.approx(20 + 7 * 125 + 3 * 50)
    measured = model.predict("upgrade", 16)
    assert measured.kind == "measured"
    assert measured.seconds == pytest.approx(20 + 7 * 4 + 3 * 1.6)


def test_the_fit_keeps_coefficients_non_negative_and_states_its_error():
    # Noisy points whose unconstrained least squares would want a negative fixed cost.
    points = [Point("idempotent", n, 0, s) for n, s in ((2, 1.0), (4, 2.4), (8, 5.1), (16, 9.8), (32, 21.0))]
    fit = fit_operation("idempotent", points, batch=None, parallelism=10)
    assert min(fit.fixed, fit.per_batch, fit.per_node) >= 0
    worst = max(abs(fit.seconds(p.nodes) - p.seconds) / p.seconds for p in points)
    assert fit.max_relative_error == pytest.approx(worst, abs=1e-6)
    model = ScaleModel({"idempotent": fit}, points, {})
    inside = model.predict("idempotent", 20)
    assert inside.relative_error == fit.max_relative_error
    # Beyond 32 nodes the error is at least how far the model fitted on 2-16 nodes missed 32.
    held_out = fit_operation("idempotent", points[:-1], batch=None, parallelism=10)
    missed = abs(held_out.seconds(32) - 21.0) / 21.0
    beyond = model.predict("idempotent", 1000)
    assert beyond.relative_error == pytest.approx(max(fit.max_relative_error, missed))
    assert beyond.low < beyond.seconds < beyond.high


def test_points_with_nodes_offline_are_reported_but_not_fitted():
    points = [Point("kill", 8, 0, 1.0), Point("kill", 16, 0, 1.2), Point("kill", 16, 4, 30.0)]
    model = ScaleModel.fit(points, {"forks": 10, "serial": 4})
    assert model.fits["kill"].max_relative_error < 1e-6
    assert model.predict("kill", 16).seconds == 1.2


@pytest.mark.skipif(not SHIPPED.exists(), reason="burden/edge-scale.json not measured yet (make bench)")
def test_the_shipped_model_reproduces_its_measured_points_within_its_stated_error():
    data = json.loads(SHIPPED.read_text())
    assert data["schema"] == 1
    assert set(data["measured"]) == {"date", "command", "revision", "machine"}
    model = ScaleModel.load(SHIPPED)
    for raw in data["points"]:
        if raw["unreachable"] or raw["operation"] not in model.fits:
            continue
        fit = model.fits[raw["operation"]]
        modelled = fit.seconds(raw["nodes"])
        assert abs(modelled - raw["seconds"]) / raw["seconds"] <= fit.max_relative_error + 1e-6, raw
        assert model.predict(raw["operation"], raw["nodes"]).kind == "measured"
    for operation in model.fits:
        for sites in (100, 500, 1000):
            prediction = model.predict(operation, sites)
            assert prediction.kind == "modelled" and prediction.seconds > 0


def test_bad_input_is_one_clear_error(tmp_path: Path):
    with pytest.raises(TargetError, match="not found: measure it"):
        ScaleModel.load(tmp_path / "missing.json")
    (tmp_path / "old.json").write_text('{"schema": 0}')
    with pytest.raises(TargetError, match="schema 1"):
        ScaleModel.load(tmp_path / "old.json")
    model = ScaleModel.fit([Point("kill", 2, 0, 1.0)], {"forks": 10, "serial": 4})
    with pytest.raises(ValueError, match="no model for operation 'reboot'"):
        model.predict("reboot", 10)


# ---- the harness on a real fleet ------------------------------------------------------------


@pytest.fixture(scope="module")
def scale_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("the test fleet needs root (network namespaces, overlayfs, systemd-nspawn)")
    from bench.edge_scale import ScaleFleet, build_bundle
    from tests.support.fleet import Fleet
    from triptyque.spec import DEFAULT_SPEC, load_spec

    work = tmp_path_factory.mktemp("edge-scale")
    spec = load_spec(ROOT / DEFAULT_SPEC, target="edge")
    build_bundle(spec, work / "bundle", print)
    with Fleet(NODES, cache_dir=CACHE) as fleet:
        yield ScaleFleet(fleet, spec, work, work / "bundle")


@pytest.mark.fleet
def test_the_bundle_of_a_fake_engine_fleet_carries_no_vllm(scale_fleet):
    from triptyque.edge.bundle import Manifest

    manifest = Manifest.load(scale_fleet.bundle_dir)
    assert set(manifest.components) == {"engine-fake", "gateway", "model", "system"}
    assert manifest.components["engine-fake"].bytes < 100_000


@pytest.mark.fleet
def test_a_converge_with_one_node_offline_reports_it_and_converges_the_others(scale_fleet):
    offline = scale_fleet.disconnect(1)
    assert offline == [f"edge{NODES}"]
    outcome = scale_fleet.converge("converge")
    print(f"first converge of {NODES} fake-engine nodes, one offline: {outcome.seconds:.0f} s, "
          f"controller {outcome.usage.cpu_seconds:.0f} CPU-s, {outcome.usage.peak_rss_mib:.0f} MiB")
    # converge() checks each of the seven: staged, running that release, gateway ready.
    assert outcome.problems == []
    assert outcome.missing == offline
    fleet = scale_fleet.fleet
    for node in fleet.nodes[:-1]:
        unit = fleet.ssh(node, "systemctl show -p Description --value triptyque-engine").stdout
        assert "fake engine" in unit
        assert fleet.ssh(node, "test -d /opt/triptyque/envs/engine-fake-*", check=False).returncode == 0
        assert fleet.ssh(node, "ls /opt/triptyque/store | grep -c engine-cpu", check=False).stdout.strip() == "0"


@pytest.mark.fleet
def test_a_kill_with_one_node_offline_stops_the_others_and_names_it(scale_fleet):
    outcome = scale_fleet.switch("kill")
    assert outcome.problems == [] and outcome.missing == [f"edge{NODES}"]
    outcome = scale_fleet.switch("resume")
    assert outcome.problems == [] and outcome.missing == [f"edge{NODES}"]
