"""The CLI: thin commands, one clear line per user mistake, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.support import ROOT
from triptyque.cli import app
from triptyque.spec import DEFAULT_SPEC

runner = CliRunner()


def spec_with(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((ROOT / DEFAULT_SPEC).read_text())
    data["model"]["source"] = str(ROOT / "serving" / "tiny-model")
    mutate(data)
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_validate_accepts_the_shipped_spec() -> None:
    result = runner.invoke(app, ["validate", "--spec", str(ROOT / DEFAULT_SPEC)])
    assert result.exit_code == 0, result.output
    assert "targets local, edge, onprem, cloud are valid" in result.output


def test_validate_prints_one_line_per_problem_and_exits_1(tmp_path: Path) -> None:
    def break_it(data):  # type: ignore[no-untyped-def]
        data["gateway"]["limits"]["max_concurrent_requests"] = 0
        data["engine"]["max_model_len"] = "long"

    path = spec_with(tmp_path, break_it)
    result = runner.invoke(app, ["validate", "--spec", str(path)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 2
    assert any("gateway.limits.max_concurrent_requests" in ln for ln in lines)
    assert any("engine.max_model_len" in ln for ln in lines)
    assert "Traceback" not in result.output


def test_up_local_says_which_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = spec_with(tmp_path, lambda d: d["targets"]["local"]["gateway"].update(port=port))
        result = runner.invoke(app, ["up", "local", "--spec", str(path), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert f"error: port {port} (gateway) is already in use" in result.output
    assert not (tmp_path / "s" / "local" / "run").exists()


def test_up_local_says_how_to_get_a_missing_prometheus(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPTYQUE_PROMETHEUS", str(tmp_path / "no-such-prometheus"))
    result = runner.invoke(app, ["up", "local", "--spec", str(spec_with(tmp_path, lambda d: None)),
                                 "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "is not an executable: install it with `apt-get install prometheus`" in result.output


def test_an_unknown_target_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--target", "mars", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown target 'mars'" in result.output


def test_kill_without_a_deployment_says_to_run_up_first(tmp_path: Path) -> None:
    result = runner.invoke(app, ["kill", "--reason", "x", "--state-dir", str(tmp_path),
                                 "--spec", str(ROOT / DEFAULT_SPEC)])
    assert result.exit_code == 1
    assert "run `triptyque up local` first" in result.output


def test_audit_verify_names_the_altered_entry(tmp_path: Path) -> None:
    from triptyque.gateway.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(action="kill", operator="a", reason="one")
    log.append(action="resume", operator="a", reason="two")
    log.path.write_text(log.path.read_text().replace('"two"', '"zwei"'))
    result = runner.invoke(app, ["audit", "verify", "--log", str(log.path)])
    assert result.exit_code == 1
    assert "audit.jsonl:2: entry seq=2 was modified after it was written" in result.output


def test_keys_new_prints_the_key_once_and_only_its_hash_for_the_spec() -> None:
    from triptyque.keys import hash_key

    result = subprocess.run([sys.executable, "-m", "triptyque.cli", "keys", "new", "alice"],
                            capture_output=True, text=True, check=True)
    key = result.stdout.strip()
    assert key.startswith("tq-") and len(key) > 40
    assert f"sha256: {hash_key(key)}" in result.stderr
    assert key not in result.stderr


@pytest.mark.e2e
def test_an_engine_that_crashes_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')

    def point_at_broken(data):  # type: ignore[no-untyped-def]
        data["model"]["source"] = str(broken)
        data["targets"]["local"]["gateway"]["port"] = 18280
        data["targets"]["local"]["engine"]["port"] = 18281

    result = subprocess.run(
        [sys.executable, "-m", "triptyque.cli", "up", "local", "--spec", str(spec_with(tmp_path, point_at_broken)),
         "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "TRIPTYQUE_LOCAL_PROMETHEUS_PORT": "19290"},
    )
    assert result.returncode == 1
    assert "error: engine exited during start; see" in result.stderr
    assert "engine.log" in result.stderr
    run_dir = tmp_path / "s" / "local" / "run"
    assert not any(run_dir.glob("*.json")), "everything started must be stopped again"
