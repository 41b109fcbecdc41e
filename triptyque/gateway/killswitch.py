"""The kill switch: stop serving at once, persist the decision, audit it.

Engaging takes effect in memory first (new requests refused, streams cut), then is
audited and persisted off the event loop; the call returns only once both are on disk. Releasing is
persisted first and takes effect only if that worked. A state that cannot be read,
or that disagrees with the audit log, starts the gateway stopped (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from triptyque.errors import AuditError, StateError
from triptyque.gateway.audit import AuditSink
from triptyque.gateway.state import KillState, StateStore, Unreadable

log = logging.getLogger("triptyque.gateway.killswitch")


# Who the state names while the switch fails closed on its own (no operator decided it).
FAIL_CLOSED_BY = "triptyque"


class PersistError(Exception):
    """The change was applied (kill) or refused (resume) but could not be persisted."""


class KillSwitch:
    def __init__(
        self,
        store: StateStore,
        audit: AuditSink,
        *,
        on_change: Callable[[KillState], None] = lambda _state: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.audit = audit
        self._on_change = on_change
        self._clock = clock
        self._lock = asyncio.Lock()
        self.state = KillState()
        self.fail_closed_reason: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._listeners: set[Callable[[], None]] = set()
        # The audit head of the last state this process loaded, saved or followed: a stored
        # state with that head is one we know, not a change made elsewhere.
        self._known_head: str | None = None

    @property
    def engaged(self) -> bool:
        return self.state.engaged

    def stopped_message(self) -> str:
        """What a refused client is told while the switch is engaged."""
        who = f" by {self.state.operator}" if self.state.operator else ""
        why = f": {self.state.reason}" if self.state.reason else ""
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

    def start(self, watch_interval: float | None = 0.5) -> None:
        """Load the stored state (fail closed if unreadable) and follow outside changes."""
        try:
            stored = self.store.load()
            head = self.audit.head()
        except (StateError, AuditError) as exc:
            self._fail_closed(str(exc))
        else:
            if stored is None and head is not None:
                self._fail_closed(
                    f"state {self.store.describe()} is missing but the audit log "
                    f"{self.audit.describe()} has entries"
                )
            elif stored is not None and stored.audit_head != head:
                self._fail_closed(
                    f"state {self.store.describe()} and audit log {self.audit.describe()} disagree; "
                    "run `triptyque audit verify`"
                )
            else:
                self._known_head = stored.audit_head if stored else None
                self._apply(stored or KillState(changed_at=self._clock()))
        if watch_interval is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._follow(watch_interval))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _follow(self, interval: float) -> None:
        async for observed in self.store.watch(interval):
            async with self._lock:
                if isinstance(observed, Unreadable):
                    self._fail_closed(observed.reason)
                    continue
                stored = observed.state
                if stored is not None and stored != self.state:
                    if stored.audit_head == self._known_head:
                        # Seen late: what this process wrote itself. Never let it undo a kill
                        # that holds in memory because its own save failed.
                        continue
                    self._known_head = stored.audit_head
                    log.warning("kill switch changed outside this process", extra={"event": "external_change"})
                    self.fail_closed_reason = None
                    self._apply(stored)

    def _persist(self, action: str, operator: str, reason: str, source: str, changed: bool) -> KillState:
        """Audit, then save the state that records the audit head. Runs in a worker thread:
        two fsyncs can take 50-100 ms on a busy disk, and the event loop must keep refusing
        requests and cutting streams meanwhile (the lock keeps changes in order)."""
        entry = self.audit.append(
            action=action, operator=operator, reason=reason, source=source, changed=changed
        )
        state = KillState(
            engaged=action == "kill", operator=operator, reason=reason,
            changed_at=entry["ts"], audit_head=entry["hash"],
        )
        self.store.save(state)
        return state

    async def engage(self, operator: str, reason: str, source: str) -> tuple[KillState, bool]:
        async with self._lock:
            changed = not self.state.engaged
            self._apply(KillState(engaged=True, operator=operator, reason=reason, changed_at=self._clock()))
            try:
                state = await asyncio.to_thread(self._persist, "kill", operator, reason, source, changed)
            except (OSError, StateError, AuditError) as exc:
                raise PersistError(f"serving stopped, but the decision was not persisted: {exc}") from exc
            self.fail_closed_reason = None
            self._known_head = state.audit_head
            self.state = state
            return state, changed

    async def release(self, operator: str, reason: str, source: str) -> tuple[KillState, bool]:
        async with self._lock:
            changed = self.state.engaged
            try:
                state = await asyncio.to_thread(self._persist, "resume", operator, reason, source, changed)
            except (OSError, StateError, AuditError) as exc:
                raise PersistError(f"still stopped: the resume could not be persisted: {exc}") from exc
            self.fail_closed_reason = None
            self._known_head = state.audit_head
            self._apply(state)
            return state, changed
