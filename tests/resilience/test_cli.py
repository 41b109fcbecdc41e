"""Bad input at the command line: broken spec files and inventories.

Each gets one clear error line naming the file (never a traceback), exit status 1,
and nothing on disk changes: the state folder (holding a previous deployment's
kill-switch state and audit log) and the input file are compared byte for byte. The
one exception: a failed ``up edge`` is recorded in the operations ledger
(``STATE_DIR/ledger.sqlite``), which is its purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.resilience.conftest import run_cli, snapshot
from tests.support import ROOT
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.state import FileStateStore, KillState

GOOD_SPEC = (ROOT / "serving" / "service.yaml").read_text()

BROKEN_SPECS: dict[str, tuple[bytes | None, str]] = {
    # name: (content, or None for no file; what the error must say)
    "missing file": (None, "file not found"),
    "empty file": (b"", "must be a YAML mapping"),
    "a list, not a mapping": (b"- name: x\n- model: y\n", "must be a YAML mapping"),
    "unclosed bracket": (b"name: x\nmodel: [tiny\n", "invalid YAML"),
    "tab indentation": (b"name: x\nmodel:\n\tname: y\n", "invalid YAML"),
    "invalid UTF-8": (b"name: \xff\xfe\xfa\n", "cannot read"),
    "unknown field": (GOOD_SPEC.replace("  port: 8080\n", "  prot: 8080\n", 1).encode(), "gateway.prot"),
    "wrong type": (GOOD_SPEC.replace("max_concurrent_requests: 16", "max_concurrent_requests: many")
                   .encode(), "max_concurrent_requests"),
    "unknown target": (GOOD_SPEC.replace("  onprem:\n", "  mars:\n", 1).encode(), "targets.mars"),
}


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    """A state folder as a previous local deployment left it: stopped, audited."""
    state = tmp_path / "state-root" / "local" / "state"
    state.mkdir(parents=True)
    entry = AuditLog(state / "audit.jsonl").append(action="kill", operator="ops", reason="incident",
                                                   source="cli", changed=True)
    FileStateStore(state / "killswitch.json").save(KillState(
        engaged=True, operator="ops", reason="incident", changed_at=entry["ts"], audit_head=entry["hash"]))
    (state.parent / "secrets.json").write_text('{"api_key": "x", "admin_key": "y"}')
    return tmp_path / "state-root"


def _spec(tmp_path: Path, name: str) -> Path:
    content, _ = BROKEN_SPECS[name]
    path = tmp_path / "spec" / "service.yaml"
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content)
    return path


def _assert_clear_failure(result: object, *must_say: str) -> None:
    rc, stderr, stdout = result.returncode, result.stderr, result.stdout  # type: ignore[attr-defined]
    assert rc == 1, (rc, stdout, stderr)
    assert "Traceback" not in stderr + stdout
    assert stderr.startswith("error: "), stderr
    for text in must_say:
        assert text in stderr, (text, stderr)


@pytest.mark.parametrize("name", list(BROKEN_SPECS))
def test_validate_names_the_problem_in_a_broken_spec_and_changes_nothing(
    tmp_path: Path, state_root: Path, name: str
) -> None:
    spec = _spec(tmp_path, name)
    before = snapshot(tmp_path)
    result = run_cli("validate", "--spec", str(spec), cwd=tmp_path)
    _assert_clear_failure(result, str(spec), BROKEN_SPECS[name][1])
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["missing file", "invalid UTF-8", "wrong type"])
def test_up_local_with_a_broken_spec_fails_before_touching_the_state_folder(
    tmp_path: Path, state_root: Path, name: str
) -> None:
    spec = _spec(tmp_path, name)
    before = snapshot(tmp_path)
    result = run_cli("up", "local", "--spec", str(spec), "--state-dir", str(state_root), cwd=tmp_path)
    _assert_clear_failure(result, str(spec), BROKEN_SPECS[name][1])
    assert snapshot(tmp_path) == before


BROKEN_INVENTORIES: dict[str, bytes | None] = {
    "missing file": None,
    "not YAML": b"[edge\nnode-1 ansible_host=\x00\n: : :\n",
    "no edge hosts": b"all:\n  hosts: {}\n",
}


@pytest.mark.parametrize("name", list(BROKEN_INVENTORIES))
def test_up_edge_with_a_broken_inventory_fails_clearly_and_changes_nothing(
    tmp_path: Path, state_root: Path, name: str
) -> None:
    inventory = tmp_path / "inventory" / "hosts.yml"
    inventory.parent.mkdir()
    content = BROKEN_INVENTORIES[name]
    if content is not None:
        inventory.write_bytes(content)
    before = snapshot(tmp_path)
    result = run_cli("up", "edge", "--spec", str(ROOT / "serving" / "service.yaml"),
                     "--inventory", str(inventory), "--state-dir", str(state_root),
                     cwd=tmp_path, timeout=120)
    _assert_clear_failure(result, str(inventory))
    after = snapshot(tmp_path)
    # The operations ledger records failed deploys too, by design (triptyque.burden);
    # everything else, the deployment's state above all, must be as it was.
    assert {k: v for k, v in after.items() if not k.endswith("ledger.sqlite")} == before
