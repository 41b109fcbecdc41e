"""The kill switch's audit chain, computed and verified in one place (pure: no I/O).

Each entry is one JSON object on one line. ``hash`` is the SHA-256 of the entry's
canonical JSON (sorted keys, without ``hash``), ``prev`` the previous entry's hash
(``GENESIS`` for the first) and ``seq`` its position from 1. Editing, reordering or
removing an entry breaks the chain at that line; the stored kill-switch state records
the last hash, so cutting the tail shows too. The sinks (a file, a ConfigMap) only
store the lines this module makes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from triptyque.errors import AuditError

GENESIS = "0" * 64


@dataclass(frozen=True)
class Verified:
    entries: int
    head: str


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def last_entry(lines: Sequence[str], where: str) -> dict[str, Any] | None:
    """The last entry of ``lines`` (not verified), None for an empty log."""
    if not lines:
        return None
    try:
        entry = json.loads(lines[-1])
        str(entry["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{where}: the last line is not a valid entry ({exc})") from None
    if not isinstance(entry, dict):
        raise AuditError(f"{where}: the last line is not a valid entry")
    return entry


def head(lines: Sequence[str], where: str) -> str | None:
    last = last_entry(lines, where)
    return None if last is None else str(last["hash"])


def next_entry(lines: Sequence[str], where: str, ts: float, fields: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The entry that follows ``lines`` and its line of text."""
    last = last_entry(lines, where)
    prev = GENESIS if last is None else str(last["hash"])
    seq = len(lines) + 1 if last is None or not isinstance(last.get("seq"), int) else last["seq"] + 1
    entry: dict[str, Any] = {"seq": seq, "ts": ts, **fields, "prev": prev}
    entry["hash"] = entry_hash(entry)
    return entry, json.dumps(entry, sort_keys=True)


def verify(lines: Sequence[str], locate: Callable[[int], str], where: str,
           expected_head: str | None = None) -> Verified:
    """Walk the chain; AuditError names the first line that does not fit.

    ``locate(n)`` names line ``n`` (from 1) in messages; ``expected_head`` is the hash the
    stored state records, to catch entries cut from the end.
    """
    prev, count = GENESIS, 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        at = locate(number)
        try:
            entry = json.loads(line)
        except ValueError:
            raise AuditError(f"{at}: entry is not valid JSON; the log was altered") from None
        if not isinstance(entry, dict) or "hash" not in entry:
            raise AuditError(f"{at}: entry has no hash; the log was altered")
        if entry.get("prev") != prev:
            raise AuditError(
                f"{at}: entry seq={entry.get('seq')} does not follow the previous entry "
                "(an entry was removed, inserted or reordered)"
            )
        if entry_hash(entry) != entry["hash"]:
            raise AuditError(f"{at}: entry seq={entry.get('seq')} was modified after it was written")
        prev, count = entry["hash"], count + 1
    if expected_head is not None and expected_head != prev:
        raise AuditError(
            f"{where}: the log ends at {prev[:12]} but the kill-switch state records "
            f"{expected_head[:12]}: entries were cut from the end"
        )
    return Verified(entries=count, head=prev)
