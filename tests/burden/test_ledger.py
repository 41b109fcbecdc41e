"""The ledger: appended to SQLite, traced to the git revision and spec, exported as JSON."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.support import ROOT
from triptyque.burden.commands import recorded
from triptyque.burden.errors import BurdenError
from triptyque.burden.ledger import SCHEMA_VERSION, Ledger, git_revision
from triptyque.cli import app
from triptyque.errors import TargetError
from triptyque.spec import DEFAULT_SPEC, load_spec
from triptyque.types import NodeReport


def test_an_entry_keeps_the_target_revision_spec_hash_versions_timings_and_outcome(tmp_path: Path) -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC, target="local")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    entry_id = ledger.record("drill", "deploy", target="local", outcome="ok", seconds=41.5, spec=spec,
                             phases={"ready": {"at": 40.0, "seconds": 40.0}}, metrics={"time_to_serve_seconds": 41.5},
                             steps=[{"actor": "human", "command": "triptyque up local"}])
    [entry] = ledger.entries()
    assert entry.id == entry_id == 1
    assert entry.spec_hash == spec.spec_hash()
    assert entry.git_revision == git_revision(ROOT) and entry.git_revision != ""
    assert entry.versions["engine (spec)"] == spec.engine.version and "python" in entry.versions
    assert entry.phases["ready"]["at"] == 40.0 and entry.metrics == {"time_to_serve_seconds": 41.5}
    assert entry.ref.startswith("ledger #1 (")


def test_entries_are_only_appended_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    for outcome in ("ok", "failed", "ok"):
        Ledger(path).record("kill", "kill", target="edge", outcome=outcome, seconds=0.01)  # type: ignore[arg-type]
    reopened = Ledger(path)
    assert [e.outcome for e in reopened.entries(target="edge")] == ["ok", "failed", "ok"]
    assert reopened.latest("edge", "kill", "kill").id == 3  # type: ignore[union-attr]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_the_json_export_holds_every_entry(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record("deploy", "deploy", target="local", outcome="ok", seconds=40.0)
    ledger.record("drill", "kill-soft", target="local", outcome="ok", seconds=0.2)
    document = json.loads(ledger.export())
    assert document["schema"] == SCHEMA_VERSION
    assert [e["name"] for e in document["entries"]] == ["deploy", "kill-soft"]


def test_the_ledger_export_command_writes_json(tmp_path: Path) -> None:
    Ledger(tmp_path / "ledger.sqlite").record("resume", "resume", target="local", outcome="ok", seconds=0.1)
    out = tmp_path / "ledger.json"
    result = CliRunner().invoke(app, ["ledger", "export", "--state-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["entries"][0]["kind"] == "resume"
    listed = CliRunner().invoke(app, ["ledger", "list", "--state-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "resume" in listed.output


def test_recorded_keeps_failed_actions_and_unreachable_nodes(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    edge = SimpleNamespace(name="edge")
    with pytest.raises(TargetError), recorded(ledger, "deploy", edge):  # type: ignore[arg-type]
        raise TargetError("edge1 unreachable over SSH")
    with recorded(ledger, "kill", edge, {"reason": "drill"}) as result:  # type: ignore[arg-type]
        result["reports"] = [NodeReport("edge1", "http://a", reachable=True, engaged=True, seconds=0.02),
                             NodeReport("edge2", "http://b", reachable=False, seconds=5.0)]
    failed, partial = ledger.entries()
    assert failed.outcome == "failed" and failed.details["error"] == "edge1 unreachable over SSH"
    assert partial.outcome == "failed" and partial.metrics["slowest_node_seconds"] == 5.0
    assert [n["node"] for n in partial.details["nodes"]] == ["edge1", "edge2"]


def test_a_ledger_that_is_not_sqlite_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_text("not a database, just text long enough to look like a file header " * 10)
    with pytest.raises(BurdenError, match=r"ledger.sqlite: the ledger cannot be read or written"):
        Ledger(path).entries()


def test_the_cli_records_a_refused_kill_in_the_ledger(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["kill", "--reason", "leak", "--operator", "alice", "--state-dir", str(tmp_path),
                                      "--spec", str(ROOT / DEFAULT_SPEC)])
    assert result.exit_code == 1 and "no local deployment" in result.output
    [entry] = Ledger(tmp_path / "ledger.sqlite").entries()
    assert (entry.kind, entry.target, entry.outcome) == ("kill", "local", "failed")
    assert entry.details["operator"] == "alice" and entry.details["reason"] == "leak"
    assert entry.details["error"].startswith("no local deployment")


def test_the_report_uses_only_this_revisions_and_specs_drills_and_shows_the_failed_ones(tmp_path: Path) -> None:
    from triptyque.burden.compare import LedgerUse, collect_drills
    from triptyque.burden.figures import load_figures

    ledger = Ledger(tmp_path / "ledger.sqlite")
    spec = load_spec(ROOT / DEFAULT_SPEC, target="local")
    metrics = {"time_to_refuse_all_seconds": 0.1}
    old = ledger.record("drill", "kill-soft", target="local", outcome="ok", spec=spec, metrics=metrics,
                        revision="aaaa")
    other_spec = ledger.record("drill", "kill-soft", target="local", outcome="ok", metrics=metrics, revision="bbbb")
    good = ledger.record("drill", "kill-soft", target="local", outcome="ok", spec=spec, metrics=metrics,
                         revision="bbbb+dirty")
    failed = ledger.record("drill", "engine-crash", target="local", outcome="failed", spec=spec,
                           details={"error": "engine did not restart"}, revision="bbbb")
    use = LedgerUse()
    drills = collect_drills(ledger, load_figures(ROOT / "burden/figures.yaml"), ROOT, spec_hash=spec.spec_hash(),
                            revision="bbbb", use=use)
    assert drills["local"]["kill-soft"].entry_id == good  # not the newer entry of another spec, not another commit
    assert "engine-crash" not in drills["local"]
    assert [e.id for e in use.used] == [good] and [e.id for e in use.failed] == [failed]
    assert use.other_revision_or_spec == 2 and {old, other_spec}.isdisjoint({good, failed})
    assert ledger.latest("local", "drill", "kill-soft", spec_hash=spec.spec_hash(), revision="aaaa").id == old  # type: ignore[union-attr]
