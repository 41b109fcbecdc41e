"""Append-only audit log of kill-switch actions, hash-chained so tampering shows.

Each line is one JSON object. ``hash`` is the SHA-256 of the entry's canonical JSON
(sorted keys, without ``hash``), and ``prev`` is the previous entry's ``hash``
(``GENESIS`` for the first). Editing, reordering or deleting an entry breaks the
chain at that line; the state file records the last hash, so cutting the tail shows
too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from triptyque.errors import AuditError

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Verified:
    entries: int
    head: str


class AuditSink(Protocol):
    """Where the kill switch appends its audit entries (a file here; the cluster elsewhere)."""

    def describe(self) -> str: ...

    def append(self, **fields: Any) -> dict[str, Any]: ...

    def head(self) -> str | None: ...


class AuditLog:
    """A JSON-lines file; appends are locked and fsynced so concurrent writers stay ordered."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def append(self, **fields: Any) -> dict[str, Any]:
        """Append one entry; on a failed write or fsync (disk full) the file is cut back to
        where it was, so the log never ends in half an entry."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            prev, seq = GENESIS, 0
            with open(fd, "rb", closefd=False) as reader:
                for line in reader:
                    if line.strip():
                        prev, seq = json.loads(line)["hash"], seq + 1
            entry: dict[str, Any] = {"seq": seq + 1, "ts": time.time(), **fields, "prev": prev}
            entry["hash"] = entry_hash(entry)
            data = (json.dumps(entry, sort_keys=True) + "\n").encode()
            size = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        return entry

    def head(self) -> str | None:
        """The last entry's hash, or None when the log is empty or missing (not verified)."""
        try:
            lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except FileNotFoundError:
            return None
        if not lines:
            return None
        try:
            return str(json.loads(lines[-1])["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"{self.path}: last line is not a valid entry ({exc})") from None

    def verify(self, expected_head: str | None = None) -> Verified:
        """Walk the chain; raise AuditError naming the first bad line."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AuditError(f"{self.path}: no audit log here") from None
        except UnicodeDecodeError:
            raise AuditError(f"{self.path}: not UTF-8 text; the file was altered") from None
        prev, count = GENESIS, 0
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                entry = json.loads(line)
            except ValueError:
                raise AuditError(f"{where}: entry is not valid JSON; the log was altered") from None
            if not isinstance(entry, dict) or "hash" not in entry:
                raise AuditError(f"{where}: entry has no hash; the log was altered")
            if entry.get("prev") != prev:
                raise AuditError(
                    f"{where}: entry seq={entry.get('seq')} does not follow the previous entry "
                    "(an entry was removed, inserted or reordered)"
                )
            if entry_hash(entry) != entry["hash"]:
                raise AuditError(f"{where}: entry seq={entry.get('seq')} was modified after it was written")
            prev, count = entry["hash"], count + 1
        if expected_head is not None and expected_head != prev:
            raise AuditError(
                f"{self.path}: the log ends at {prev[:12]} but the kill-switch state records "
                f"{expected_head[:12]}: entries were cut from the end"
            )
        return Verified(entries=count, head=prev)
