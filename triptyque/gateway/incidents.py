"""Incidents, derived from the audit chain (pure: no store of their own).

Every kill that stops a serving switch opens an incident: its id is the kill entry's
``seq``; who (the admin key's name, or the name typed on the cluster path, see
``source``), why, when, and what was cut (``in_flight`` admitted requests of which
``interrupted`` were cut; absent on the cluster path, where the gateways cut their own).
The next resume that releases the switch closes it: who, why, when, how long the service
was stopped, and under the two-person rule who approved. Kills while already stopped and
approvals are counted on the open incident. A resume from a fail-closed state with no
kill before it closes an incident opened by the gateway itself (``opened_by`` is
``FAIL_CLOSED``, ``opened_at`` unknown).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from triptyque.gateway.chain import APPROVAL, KILL, RESUME

FAIL_CLOSED = "(fail closed)"


@dataclass
class Incident:
    id: int
    opened_at: float | None
    opened_by: str
    reason: str
    source: str = ""
    note: str | None = None
    in_flight: int | None = None
    interrupted: int | None = None
    kills: int = 1
    approvals: list[str] = field(default_factory=list)
    closed_seq: int | None = None
    closed_at: float | None = None
    closed_by: str | None = None
    close_reason: str | None = None
    close_note: str | None = None
    close_source: str | None = None
    approvers: list[str] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.closed_seq is None

    @property
    def stopped_seconds(self) -> float | None:
        if self.opened_at is None or self.closed_at is None:
            return None
        return max(0.0, self.closed_at - self.opened_at)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": self.open, "stopped_seconds": self.stopped_seconds}


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ts(entry: dict[str, Any]) -> float | None:
    value = entry.get("ts")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def via(source: str | None) -> str:
    """How a decision was taken, from its entry's ``source``: an admin key or a kubeconfig."""
    if not source:
        return "-"
    if source.startswith("gateway:"):
        return "admin key"
    return "kubeconfig" if source.startswith("kubeconfig") else source


def incidents(entries: Iterable[dict[str, Any]]) -> list[Incident]:
    """The incidents an audit chain records, oldest first (give it verified entries)."""
    found: list[Incident] = []
    current: Incident | None = None
    for entry in entries:
        action, seq = entry.get("action"), _int(entry.get("seq")) or 0
        if action == KILL:
            if current is not None:
                current.kills += 1
                continue
            current = Incident(
                id=seq, opened_at=_ts(entry), opened_by=_text(entry, "operator"), reason=_text(entry, "reason"),
                source=_text(entry, "source"), note=entry.get("note") if isinstance(entry.get("note"), str) else None,
                in_flight=_int(entry.get("in_flight")), interrupted=_int(entry.get("interrupted")))
            found.append(current)
        elif action == APPROVAL and current is not None:
            current.approvals.append(_text(entry, "operator"))
        elif action == RESUME and (current is not None or entry.get("fail_closed")):
            if current is None:  # the gateway stopped itself (fail closed): no kill entry opened it
                current = Incident(id=seq, opened_at=None, opened_by=FAIL_CLOSED,
                                   reason=_text(entry, "fail_closed"), source="gateway")
                found.append(current)
            approvers = entry.get("approvers")
            current.closed_seq, current.closed_at = seq, _ts(entry)
            current.closed_by, current.close_reason = _text(entry, "operator"), _text(entry, "reason")
            current.close_note = entry.get("note") if isinstance(entry.get("note"), str) else None
            current.close_source = _text(entry, "source")
            current.approvers = [str(a) for a in approvers] if isinstance(approvers, list) else []
            current = None
    return found
