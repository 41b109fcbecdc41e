"""The drill framework without a real engine: registry, refusals, failures kept in the ledger."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import ROOT
from triptyque.burden.drills import DRILLS, DrillContext, available, run_drill
from triptyque.burden.errors import BurdenError
from triptyque.burden.hooks import hooks_for
from triptyque.burden.ledger import Ledger
from triptyque.burden.probe import Prober
from triptyque.cli import app
from triptyque.errors import TargetError
from triptyque.spec import DEFAULT_SPEC, load_spec
from triptyque.targets.edge_hooks import EdgeHooks
from triptyque.targets.hooks import DrillHooks
from triptyque.targets.local import LocalTarget
from triptyque.targets.local_hooks import LocalHooks
from triptyque.types import Access, Endpoint, NodeReport, Progress


class BrokenTarget:
    """A target whose deploy always fails, the way a missing tool or a busy port makes it fail."""

    name = "broken"
    spec = load_spec(ROOT / DEFAULT_SPEC, target="local")

    def up(self, progress: Progress) -> list[Endpoint]:
        progress("preflight")
        raise TargetError("port 48080 (gateway) is already in use")

    def down(self, progress: Progress) -> None:
        return None

    def status(self) -> list[NodeReport]:
        return []

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        return []

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        return []

    def drill_hooks(self) -> DrillHooks:
        return BrokenHooks()


class BrokenHooks(DrillHooks):
    cli_name = "broken"

    def access(self) -> Access:
        return Access([Endpoint("n1", "http://127.0.0.1:9")], "key", "model")

    def deployed(self) -> bool:
        return False


def test_a_failed_drill_is_recorded_as_failed_with_its_error_and_steps(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    result = run_drill("deploy", BrokenTarget(), BrokenHooks(), ledger=ledger, operator="ci")
    assert result.outcome == "failed"
    assert result.error == "TargetError: port 48080 (gateway) is already in use"
    [entry] = ledger.entries()
    assert (entry.kind, entry.name, entry.target, entry.outcome) == ("drill", "deploy", "broken", "failed")
    assert entry.steps == [{"actor": "human", "action": "deploy", "command": "triptyque up broken",
                            "seconds": entry.steps[0]["seconds"], "outcome": "failed",
                            "detail": "port 48080 (gateway) is already in use"}]
    assert entry.details["error"] == result.error


def test_drills_a_target_cannot_support_are_refused_before_anything_runs(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(BurdenError, match=r"drill node-reboot is not available on broken: it needs can_reboot_node"):
        run_drill("node-reboot", BrokenTarget(), BrokenHooks(), ledger=ledger, operator="ci")
    with pytest.raises(BurdenError, match=r"unknown drill 'reboot-everything'"):
        run_drill("reboot-everything", BrokenTarget(), BrokenHooks(), ledger=ledger, operator="ci")
    assert ledger.entries() == []


def test_the_local_target_offers_its_five_drills_and_edge_all_of_them() -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC, target="local")
    local = LocalHooks(LocalTarget(spec, Path("/nonexistent")))
    assert available(local) == ["deploy", "redeploy", "kill-soft", "kill-hard", "engine-crash"]
    assert set(DRILLS) == {"deploy", "redeploy", "upgrade", "rollback", "kill-soft", "kill-hard",
                           "engine-crash", "node-reboot"}
    assert isinstance(hooks_for(LocalTarget(spec, Path("/nonexistent"))), LocalHooks)


def test_edge_phases_come_from_task_names_the_playbooks_really_have() -> None:
    tasks = "\n".join(p.read_text() for p in (ROOT / "playbooks" / "roles").glob("*/tasks/*.yml"))
    names = re.findall(r"name: (.+)", tasks)
    for pattern in (r"^Install \|", r"^Configure \|"):
        assert any(re.search(pattern, name) for name in names), pattern
    assert "triptyque-engine.service" in {p.name.removesuffix(".j2") for p in
                                          (ROOT / "playbooks/roles/triptyque/templates").glob("*.service.j2")}


def test_an_edge_upgrade_changes_the_engine_configuration_and_keeps_the_rest(tmp_path: Path) -> None:
    from triptyque.targets.edge import EdgeTarget

    spec = load_spec(ROOT / DEFAULT_SPEC, target="edge")
    hooks = hooks_for(EdgeTarget(spec, tmp_path / "edge", tmp_path / "inventory.yml"))
    assert isinstance(hooks, EdgeHooks) and available(hooks) == list(DRILLS)
    upgraded, change = hooks.upgraded(spec)
    assert upgraded.engine.max_model_len != spec.engine.max_model_len
    assert upgraded.spec_hash() != spec.spec_hash() and upgraded.model == spec.model
    assert change.startswith("engine configuration: max_model_len")


def test_phases_are_ordered_by_time_with_their_durations() -> None:
    ctx = DrillContext(BrokenTarget(), BrokenHooks(), "ci", lambda _m: None)
    ctx.mark("ready", "b", at=10.0)
    ctx.mark("infra_ready", "a", at=2.5)
    ctx.mark("first_token", "c", at=10.25)
    ctx.mark("ready", "ignored: a phase is marked once", at=99.0)
    assert {k: (v["at"], v["seconds"]) for k, v in ctx.ordered_phases().items()} == {
        "infra_ready": (2.5, 2.5), "ready": (10.0, 7.5), "first_token": (10.25, 0.25)}


def test_the_prober_measures_the_longest_outage_per_gateway() -> None:
    prober = Prober(Access([Endpoint("a", ""), Endpoint("b", "")], "k", "m"), lambda: 0.0)
    prober.samples = [("a", 0.0, 200), ("b", 0.0, 200), ("a", 1.0, 0), ("b", 1.0, 503), ("a", 2.0, 502),
                      ("b", 1.5, 200), ("a", 4.5, 200), ("b", 5.0, 200)]
    assert prober.longest_outage() == pytest.approx(3.5)
    assert prober.failed == 3


def test_drilling_a_kubernetes_target_says_it_is_modelled(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["drill", "onprem", "deploy", "--spec", str(ROOT / DEFAULT_SPEC),
                                      "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "Kubernetes drills are modelled" in result.output and "Traceback" not in result.output


def test_an_unknown_drill_name_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["drill", "local", "deploy,teleport", "--spec", str(ROOT / DEFAULT_SPEC),
                                      "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown drill 'teleport'" in result.output


def test_compare_writes_html_markdown_and_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "compare", "--scenario", str(ROOT / "burden/scenarios/national-247.yaml"), "--out", str(tmp_path / "r"),
        "--figures", str(ROOT / "burden/figures.yaml"), "--skills", str(ROOT / "burden/skills.yaml"),
        "--spec", str(ROOT / DEFAULT_SPEC), "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.html", "report.json", "report.md"]
    assert "example contract, 2026-10" in (tmp_path / "r" / "report.html").read_text()
