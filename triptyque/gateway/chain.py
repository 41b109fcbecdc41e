"""The kill switch's audit chain, computed and verified in one place (pure: no I/O).

Each entry is one JSON object on one line. ``hash`` is the SHA-256 of the entry's
canonical JSON (sorted keys, without ``hash`` and ``mac``), ``prev`` the previous
entry's hash (``GENESIS`` for the first) and ``seq`` its position from 1. Editing,
reordering or removing an entry breaks the chain at that line; the stored kill-switch
state records the last hash and sequence, so cutting the tail shows too.

With an audit key (held outside the state folder, ``triptyque.keys.audit_key``) every
entry also carries ``mac``, the HMAC-SHA256 of its hash: whoever can write the state
folder but not read the key cannot forge an entry or a state. Once a log has a signed
entry, every later one must be signed. ``next_entry`` verifies the whole chain before
it appends, and refuses to chain onto a log that ends before the entry its writer last
recorded (``after``): a log cut while a gateway runs is caught at the next decision.
The sinks (a file, a ConfigMap) only store the lines this module makes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from triptyque.errors import AuditError

GENESIS = "0" * 64
# The actions an entry records. An approval is recorded while the switch stays engaged (the
# two-person rule), so after either of ENGAGED_AFTER the stored state says engaged.
KILL, RESUME, APPROVAL = "kill", "resume", "resume-approval"
ENGAGED_AFTER = frozenset({KILL, APPROVAL})


@dataclass(frozen=True)
class Verified:
    """A chain that holds: how many entries, and its last entry's hash, sequence and action."""

    entries: int
    head: str
    seq: int = 0
    action: str | None = None
    recoveries: tuple[int, ...] = ()  # entries that resumed from a fail-closed state


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k not in ("hash", "mac")}
    return hashlib.sha256(canonical(body)).hexdigest()


def mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mac_ok(key: bytes, data: bytes, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(mac(key, data), given)


def last_entry(lines: Sequence[str], where: str) -> dict[str, Any] | None:
    """The last entry of ``lines`` (not verified), None for an empty log."""
    if not lines:
        return None
    try:
        entry = json.loads(lines[-1])
        str(entry["hash"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise AuditError(f"{where}: the last line is not a valid entry ({type(exc).__name__})") from None
    if not isinstance(entry, dict):
        raise AuditError(f"{where}: the last line is not a valid entry")
    return entry


def head(lines: Sequence[str], where: str) -> str | None:
    last = last_entry(lines, where)
    return None if last is None else str(last["hash"])


def next_entry(lines: Sequence[str], where: str, ts: float, fields: dict[str, Any], *,
               key: bytes | None = None, after: tuple[int, str] | None = None,
               locate: Callable[[int], str] | None = None,
               start: tuple[int, str] | None = None, signed_before: bool = False,
               ) -> tuple[dict[str, Any], str]:
    """The entry that follows ``lines`` and its line of text.

    The chain is verified first (AuditError names what is wrong); ``after`` is the
    (sequence, hash) of the last entry the writer knows: a log that ends before it was cut.
    ``start`` is where ``lines`` begin when earlier entries were archived (see ``verify``).
    """
    verified = verify(lines, locate or (lambda n: f"{where}:{n}"), where, key=key, start=start,
                      signed_before=signed_before)
    if after is not None:
        seq, known = after
        if verified.seq < seq or (verified.seq == seq and verified.head != known):
            raise AuditError(
                f"{where}: the log ends at entry {verified.seq} but this gateway recorded entry {seq}: "
                "entries were removed or rewritten; nothing more is appended to it"
            )
    entry: dict[str, Any] = {"seq": verified.seq + 1, "ts": ts, **fields, "prev": verified.head}
    entry["hash"] = entry_hash(entry)
    if key is not None:
        entry["mac"] = mac(key, entry["hash"].encode())
    return entry, json.dumps(entry, sort_keys=True)


def verify(lines: Sequence[str], locate: Callable[[int], str], where: str,
           expected_head: str | None = None, key: bytes | None = None,
           start: tuple[int, str] | None = None, signed_before: bool = False) -> Verified:
    """Walk the chain; AuditError names the first line that does not fit.

    ``locate(n)`` names line ``n`` (from 1) in messages; ``expected_head`` is the hash the
    stored state records, to catch entries cut from the end; with ``key`` every entry from
    the first signed one on must carry a valid ``mac``. ``start`` is the (sequence, hash) of
    the entry before the first line, when the chain's earlier entries were archived (a
    segment): the first line must follow it exactly as it followed it in the whole chain;
    ``signed_before``: the archived entries were signed, so every entry here must be.
    """
    seq, prev = start or (0, GENESIS)
    count, action = 0, None
    signed = signed_before
    recoveries: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        at = locate(number)
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
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
        number_in_chain = entry.get("seq") if isinstance(entry.get("seq"), int) else count + 1
        if number_in_chain != seq + 1:
            raise AuditError(f"{at}: entry seq={entry.get('seq')} is out of sequence (expected {seq + 1})")
        if key is not None and (signed or "mac" in entry):
            signed = True
            if not mac_ok(key, str(entry["hash"]).encode(), entry.get("mac")):
                raise AuditError(
                    f"{at}: entry seq={number_in_chain} is not signed with the audit key; "
                    "it was not written by a gateway holding the key"
                )
        if entry.get("fail_closed"):
            recoveries.append(number_in_chain)
        prev, count, seq = entry["hash"], count + 1, number_in_chain
        action = entry.get("action") if isinstance(entry.get("action"), str) else None
    if expected_head is not None and expected_head != prev:
        raise AuditError(
            f"{where}: the log ends at {prev[:12]} but the kill-switch state records "
            f"{expected_head[:12]}: entries were cut from the end"
        )
    return Verified(entries=count, head=prev, seq=seq, action=action, recoveries=tuple(recoveries))


def entries(lines: Sequence[str], locate: Callable[[int], str], where: str,
            key: bytes | None = None) -> list[dict[str, Any]]:
    """The entries of ``lines`` as dicts, once the whole chain is verified (AuditError if not)."""
    verify(lines, locate, where, key=key)
    return [json.loads(line) for line in lines if line.strip()]


def after_last(chain_entries: Sequence[dict[str, Any]], *actions: str) -> list[dict[str, Any]]:
    """The entries after the last one whose action is one of ``actions`` (all, if there is none)."""
    for index in range(len(chain_entries) - 1, -1, -1):
        if chain_entries[index].get("action") in actions:
            return list(chain_entries[index + 1:])
    return list(chain_entries)


def entries_after_last(lines: Sequence[str], locate: Callable[[int], str], where: str, *actions: str,
                       key: bytes | None = None) -> list[dict[str, Any]]:
    """The verified entries after the last one whose action is one of ``actions``."""
    return after_last(entries(lines, locate, where, key=key), *actions)
