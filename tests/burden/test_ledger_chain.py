"""The ledger is evidence: each row carries the previous row's hash, and `ledger verify` finds
a row that was changed, removed or inserted, and says which."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triptyque.burden.errors import BurdenError
from triptyque.burden.ledger import GENESIS, Ledger
from triptyque.cli import app


def _ledger(tmp_path: Path, rows: int = 4) -> Ledger:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for n in range(rows):
        ledger.record("kill" if n % 2 == 0 else "resume", f"op-{n}", target="local", outcome="ok",
                      seconds=0.01 * n, details={"reason": f"drill {n}"}, revision="abc")
    return ledger


def _sql(ledger: Ledger, statement: str, *args: object) -> None:
    with sqlite3.connect(ledger.path) as db:
        db.execute(statement, args)


def test_rows_are_chained_from_genesis_and_verify_walks_them(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    entries = ledger.entries()
    assert entries[0].prev_hash == GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.row_hash for e in entries[:-1]]
    verified = ledger.verify()
    assert (verified.entries, verified.head) == (4, entries[-1].row_hash)


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda led: _sql(led, "UPDATE entries SET details = ? WHERE id = 2", '{"reason": "nothing happened"}'),
     "entry #2 was modified"),
    (lambda led: _sql(led, "UPDATE entries SET outcome = 'failed' WHERE id = 3"), "entry #3 was modified"),
    (lambda led: _sql(led, "DELETE FROM entries WHERE id = 2"), "entry #3 does not follow"),
    (lambda led: _sql(led, "INSERT INTO entries (recorded_at, kind, name, target, outcome, git_revision, versions, "
                           "phases, metrics, steps, details, prev_hash, row_hash) SELECT recorded_at, kind, name, "
                           "target, outcome, git_revision, versions, phases, metrics, steps, details, prev_hash, "
                           "row_hash FROM entries WHERE id = 2"), "entry #5 does not follow"),
])
def test_a_tampered_row_is_found_and_named(tmp_path: Path, tamper, message: str) -> None:
    ledger = _ledger(tmp_path)
    tamper(ledger)
    with pytest.raises(BurdenError, match=message):
        ledger.verify()


def test_the_cli_verifies_and_fails_with_one_line_naming_the_row(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["ledger", "verify", "--ledger", str(ledger.path)])
    assert ok.exit_code == 0 and "4 entries, chain intact" in ok.output
    _sql(ledger, "UPDATE entries SET seconds = 99 WHERE id = 1")
    bad = runner.invoke(app, ["ledger", "verify", "--ledger", str(ledger.path)])
    assert bad.exit_code == 1
    assert "entry #1 was modified" in bad.output and "Traceback" not in bad.output


def test_a_ledger_written_before_the_chain_is_chained_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, recorded_at TEXT NOT NULL,
              kind TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL,
              seconds REAL, git_revision TEXT NOT NULL, spec_hash TEXT, versions TEXT NOT NULL,
              phases TEXT NOT NULL, metrics TEXT NOT NULL, steps TEXT NOT NULL, details TEXT NOT NULL);
            INSERT INTO entries (recorded_at, kind, name, target, outcome, seconds, git_revision, spec_hash,
              versions, phases, metrics, steps, details)
              VALUES ('2026-11-22T10:00:00.000+00:00', 'kill', 'kill', 'local', 'ok', 0.1, 'abc', NULL,
                      '{}', '{}', '{}', '[]', '{}');
            PRAGMA user_version = 1;
        """)
    ledger = Ledger(path)
    ledger.record("resume", "resume", target="local", outcome="ok", revision="abc")
    assert ledger.verify().entries == 2
