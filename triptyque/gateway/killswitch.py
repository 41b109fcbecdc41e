"""The kill switch: stop serving at once, persist the decision, audit it.

Engaging takes effect in memory first (new requests refused, streams cut), then is
audited and persisted off the event loop; the call returns only once both are on disk. Releasing is
persisted first and takes effect only if that worked. A decision that cannot be
persisted leaves the switch failed closed, saying why.

The stored state and the audit chain must tell the same story (the last entry's hash,
sequence and action; with an audit key, a valid signature): at start and at every
change seen in the store, re-read under the lock. A state that cannot be read or that
disagrees fails closed. A change made elsewhere is applied only when it is newer (by
audit sequence) than what this process knows, so a stale read can never undo a kill;
an audit log that went backwards (cut) fails closed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from triptyque.errors import AuditError, StateError
from triptyque.gateway.audit import AuditSink
from triptyque.gateway.chain import APPROVAL, KILL, RESUME, Verified
from triptyque.gateway.models import unprintable
from triptyque.gateway.state import KillState, StateStore, disagreement

log = logging.getLogger("triptyque.gateway.killswitch")


# Who the state names while the switch fails closed on its own (no operator decided it).
FAIL_CLOSED_BY = "triptyque"


def _plain(text: str) -> str:
    """``text`` with control and direction characters replaced (a state written by another hand)."""
    return text if unprintable(text) is None else "".join(
        "?" if unprintable(char) is not None else char for char in text)


class PersistError(Exception):
    """The change was applied (kill) or refused (resume) but could not be persisted."""


@dataclass(frozen=True)
class Pending:
    """A resume held by the two-person rule: this approval is recorded (entry ``seq``); one more
    from another admin credential before ``deadline`` releases the switch."""

    approver: str
    seq: int
    deadline: float
    window: float
    state: KillState


def standing_approvals(since_kill: Sequence[dict[str, Any]], now: float, window: float) -> dict[str, float]:
    """Who approved a resume within ``window`` seconds of ``now``, and when (their latest approval).

    ``since_kill`` is the chain after the last kill or resume (``AuditSink.entries_after_last``):
    approvals made before it belong to an incident that is over."""
    standing: dict[str, float] = {}
    for entry in since_kill:
        ts, who = entry.get("ts"), entry.get("operator")
        if entry.get("action") == APPROVAL and isinstance(ts, int | float) and isinstance(who, str) \
                and 0 <= now - ts <= window:
            standing[who] = float(ts)
    return standing


class KillSwitch:
    def __init__(
        self,
        store: StateStore,
        audit: AuditSink,
        *,
        on_change: Callable[[KillState], None] = lambda _state: None,
        on_audit: Callable[[int, str], None] = lambda _seq, _head: None,
        on_persist_failure: Callable[[str], None] = lambda _why: None,
        clock: Callable[[], float] = time.time,
        key: bytes | None = None,
        key_error: str | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self._on_change = on_change
        self._on_audit = on_audit
        self._on_persist_failure = on_persist_failure
        self._clock = clock
        self._key = key
        self._key_error = key_error
        self._lock = asyncio.Lock()
        self.state = KillState()
        self.fail_closed_reason: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._listeners: set[Callable[[], None]] = set()
        # The (sequence, hash) of the last audit entry this process loaded, wrote or followed.
        self._known: tuple[int, str] | None = None

    @property
    def engaged(self) -> bool:
        return self.state.engaged

    @property
    def known(self) -> tuple[int, str] | None:
        return self._known

    def stopped_message(self) -> str:
        """What a refused client holding a valid key is told while the switch is engaged.

        A fail-closed reason names files and checks: it goes to ``/admin/status`` and
        the log only."""
        if self.fail_closed_reason is not None or self.state.operator == FAIL_CLOSED_BY:
            return ("Service stopped: the kill-switch state could not be verified (fail closed). "
                    "Nothing is served until an operator checks it and resumes.")
        who = f" by {_plain(self.state.operator)}" if self.state.operator else ""
        why = f": {_plain(self.state.reason)}" if self.state.reason else ""
        return f"Service stopped by operator decision{who}{why}. Nothing is served until it is resumed."

    def on_engage(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the switch engages (soon, if it is engaged now); returns its remover.

        Every request in flight registers one (see ``interrupt.py``): a plain callback is
        cheaper than a task waiting on an event per request.
        """
        if self.state.engaged:
            asyncio.get_running_loop().call_soon(callback)
        self._listeners.add(callback)
        return lambda: self._listeners.discard(callback)

    def _apply(self, state: KillState) -> None:
        self.state = state
        if state.engaged:
            for callback in list(self._listeners):
                callback()
        self._on_change(state)

    def _fail_closed(self, why: str) -> None:
        self.fail_closed_reason = why
        log.error("kill switch fails closed: %s", why, extra={"event": "fail_closed"})
        self._apply(KillState(engaged=True, operator=FAIL_CLOSED_BY, reason=f"fail-closed: {why}",
                              changed_at=self._clock()))

    def _learn(self, seq: int, head: str) -> None:
        self._known = (seq, head)
        self._on_audit(seq, head)

    def _read(self) -> tuple[KillState | None, Verified]:
        """The stored state, then the whole chain verified (in this order: a writer appends
        before it saves, so a state read first is never ahead of the chain read after)."""
        return self.store.load(), self.audit.check()

    def start(self, watch_interval: float | None = 0.5) -> None:
        """Load the stored state and the chain (fail closed unless they agree); follow changes."""
        if self._key_error is not None:
            self._fail_closed(self._key_error)
        else:
            try:
                stored, chain = self._read()
            except (StateError, AuditError) as exc:
                self._fail_closed(str(exc))
            else:
                if stored is not None and stored.audit_head and (stored.audit_seq or 0) > chain.seq:
                    # The log ends before the entry the state records: it was cut. Nothing is
                    # chained onto it, so the cut stays visible to `triptyque audit verify`.
                    self._learn(stored.audit_seq or 0, stored.audit_head)
                elif chain.entries:
                    self._learn(chain.seq, chain.head)
                problem = disagreement(stored, chain, self._key)
                if problem is not None:
                    self._fail_closed(f"state and audit log disagree: {problem}; run `triptyque audit verify`")
                else:
                    self._apply(stored or KillState(changed_at=self._clock()))
        if watch_interval is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._follow(watch_interval))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _follow(self, interval: float) -> None:
        async for _observed in self.store.watch(interval):
            async with self._lock:
                # What the watcher saw may be stale by now (a decision of this process can
                # have been persisted while it waited for the lock): read again, under the lock.
                try:
                    stored, chain = await asyncio.to_thread(self._read)
                except (StateError, AuditError) as exc:
                    self._fail_closed(str(exc))
                    continue
                self._check_change(stored, chain)

    def _check_change(self, stored: KillState | None, chain: Verified) -> None:
        known_seq, known_head = self._known or (0, None)
        if chain.seq < known_seq or (chain.seq == known_seq and chain.entries and chain.head != known_head):
            self._fail_closed(
                f"the audit log {self.audit.describe()} ends at entry {chain.seq} but this gateway "
                f"recorded entry {known_seq}: entries were removed or rewritten"
            )
            return
        problem = disagreement(stored, chain, self._key)
        if problem is not None:
            stored_seq = (stored.audit_seq or 0) if stored is not None else 0
            if chain.seq > known_seq and chain.seq > stored_seq:
                return  # another writer appended and has not saved its state yet: its save comes next
            self._fail_closed(f"state and audit log disagree: {problem}; run `triptyque audit verify`")
            return
        if chain.seq > known_seq and stored is not None:
            self._learn(chain.seq, chain.head)
            log.warning("kill switch changed outside this process", extra={"event": "external_change"})
            self.fail_closed_reason = None
            self._apply(stored)

    def _spread_fail_closed(self, why: str) -> None:
        """The safety switch: a kill that the audit log refused still stops every gateway sharing
        the store. The state alone is written, engaged, naming no new audit entry: every other
        replica reads a state the chain does not back and fails closed too (never open). Only an
        operator's resume, recorded once the log accepts entries again, releases it."""
        known_seq, known_head = self._known or (None, None)
        state = KillState(engaged=True, operator=FAIL_CLOSED_BY, reason=f"fail-closed: {why}"[:500],
                          changed_at=self._clock(), audit_head=known_head, audit_seq=known_seq)
        try:
            self.store.save(state)
        except (OSError, StateError, AuditError) as exc:
            log.error("the fail-closed state could not be written either: %s", exc,
                      extra={"event": "fail_closed_not_spread"})

    def _persist(self, action: str, operator: str, reason: str, source: str, changed: bool,
                 fields: dict[str, Any] | None = None) -> KillState:
        """Audit, then save the state that records the audit entry. Runs in a worker thread:
        two fsyncs can take 50-100 ms on a busy disk, and the event loop must keep refusing
        requests and cutting streams meanwhile (the lock keeps changes in order).

        ``fields`` are recorded in the entry besides the decision (a note, what was cut, the
        approvers). An approval leaves the switch engaged: the state keeps the kill's operator,
        reason and time, with the approval's place in the chain."""
        if self._key_error is not None:
            raise AuditError(self._key_error)
        extra = {"fail_closed": self.fail_closed_reason} if self.fail_closed_reason and action != APPROVAL else {}
        entry = self.audit.append_after(self._known, {
            "action": action, "operator": operator, "reason": reason, "source": source,
            "changed": changed, **(fields or {}), **extra,
        })
        self._learn(int(entry["seq"]), str(entry["hash"]))
        if action == APPROVAL:
            state = self.state.model_copy(update={"engaged": True, "audit_head": entry["hash"],
                                                  "audit_seq": entry["seq"], "mac": None})
        else:
            state = KillState(
                engaged=action == KILL, operator=operator, reason=reason,
                changed_at=entry["ts"], audit_head=entry["hash"], audit_seq=entry["seq"],
            )
        state = state.signed(self._key)
        self.store.save(state)
        return state

    def _resume_or_approve(self, operator: str, reason: str, source: str, fields: dict[str, Any],
                           window: float) -> KillState | Pending:
        """The two-person rule, in the worker thread under the lock: release when another
        credential's approval stands within the window, else record this one as an approval.

        The approvals are read from the chain (the entries after the last kill or resume), so
        they hold across restarts and replicas sharing one chain."""
        if self._key_error is not None:
            raise AuditError(self._key_error)
        now = self._clock()
        standing = standing_approvals(self.audit.entries_after_last(KILL, RESUME), now, window)
        others = sorted((who for who in standing if who != operator), key=lambda who: standing[who])
        if others:
            return self._persist(RESUME, operator, reason, source, True,
                                 {**fields, "approvers": [*others, operator], "approval_window": window})
        state = self._persist(APPROVAL, operator, reason, source, False,
                              {**fields, "approval_window": window, "approvals_needed": 1})
        return Pending(approver=operator, seq=state.audit_seq or 0, deadline=now + window, window=window,
                       state=state)

    async def engage(self, operator: str, reason: str, source: str, *, note: str | None = None,
                     in_flight: int | None = None) -> tuple[KillState, bool]:
        """Stop serving now. ``in_flight`` (a serving gateway's count of admitted requests) is
        recorded with how many of them this kill interrupted (the rest drain, with
        ``cut_streams: false``); a process that serves nothing (the cluster CLI) passes None."""
        async with self._lock:
            changed = not self.state.engaged
            fields: dict[str, Any] = {} if note is None else {"note": note}
            if in_flight is not None:
                fields |= {"in_flight": in_flight, "interrupted": len(self._listeners) if changed else 0}
            self._apply(KillState(engaged=True, operator=operator, reason=reason, changed_at=self._clock()))
            try:
                state = await asyncio.to_thread(self._persist, KILL, operator, reason, source, changed, fields)
            except (OSError, StateError, AuditError) as exc:
                why = f"the kill was not persisted: {exc}"
                self.fail_closed_reason = why
                log.error("kill switch fails closed: %s", why, extra={"event": "fail_closed"})
                self._on_persist_failure(why)
                await asyncio.to_thread(self._spread_fail_closed, why)
                raise PersistError(f"serving stopped, but the decision was not persisted: {exc}") from exc
            self.fail_closed_reason = None
            self.state = state
            return state, changed

    async def release(self, operator: str, reason: str, source: str, *, note: str | None = None,
                      two_person_window: float | None = None) -> tuple[KillState, bool] | Pending:
        """Resume serving. With ``two_person_window`` (the spec's two-person rule) an engaged
        switch is released only by a second admin credential within the window: the first
        call records an approval and answers ``Pending``."""
        async with self._lock:
            changed = self.state.engaged
            fields: dict[str, Any] = {} if note is None else {"note": note}
            try:
                if two_person_window is not None and changed:
                    outcome = await asyncio.to_thread(self._resume_or_approve, operator, reason, source,
                                                      fields, two_person_window)
                    if isinstance(outcome, Pending):
                        self.state = outcome.state  # still engaged: nothing to apply
                        return outcome
                    state = outcome
                else:
                    state = await asyncio.to_thread(self._persist, RESUME, operator, reason, source, changed,
                                                    fields)
            except (OSError, StateError, AuditError) as exc:
                self._on_persist_failure(f"the resume was not persisted: {exc}")
                raise PersistError(f"still stopped: the resume could not be persisted: {exc}") from exc
            self.fail_closed_reason = None
            self._apply(state)
            return state, changed
