"""The kill switch: stop serving at once, persist the decision, audit it.

Engaging takes effect in memory first (new requests refused, streams cut), then is
audited and persisted; the call returns only once both are on disk. Releasing is
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
from triptyque.gateway.state import KillState, StateStore

log = logging.getLogger("triptyque.gateway.killswitch")


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
        self._cut = asyncio.Event()
        self.state = KillState()
        self.fail_closed_reason: str | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def engaged(self) -> bool:
        return self.state.engaged

    async def wait_engaged(self) -> None:
        """Return as soon as the switch is engaged (used to cut in-flight streams)."""
        await self._cut.wait()

    def _apply(self, state: KillState) -> None:
        self.state = state
        if state.engaged:
            self._cut.set()
        else:
            self._cut = asyncio.Event()
        self._on_change(state)

    def _fail_closed(self, why: str) -> None:
        self.fail_closed_reason = why
        log.error("kill switch fails closed: %s", why, extra={"event": "fail_closed"})
        self._apply(KillState(engaged=True, operator="triptyque", reason=f"fail-closed: {why}",
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
                self._apply(stored or KillState(changed_at=self._clock()))
        if watch_interval is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._follow(watch_interval))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _follow(self, interval: float) -> None:
        async for stored in self.store.watch(interval):
            async with self._lock:
                if stored is not None and stored != self.state:
                    log.warning("kill switch changed outside this process", extra={"event": "external_change"})
                    self.fail_closed_reason = None
                    self._apply(stored)

    def _record(self, action: str, operator: str, reason: str, source: str, changed: bool) -> KillState:
        entry = self.audit.append(
            action=action, operator=operator, reason=reason, source=source, changed=changed
        )
        return KillState(
            engaged=action == "kill", operator=operator, reason=reason,
            changed_at=entry["ts"], audit_head=entry["hash"],
        )

    async def engage(self, operator: str, reason: str, source: str) -> tuple[KillState, bool]:
        async with self._lock:
            changed = not self.state.engaged
            self._apply(KillState(engaged=True, operator=operator, reason=reason, changed_at=self._clock()))
            try:
                state = self._record("kill", operator, reason, source, changed)
                self.store.save(state)
            except (OSError, StateError, AuditError) as exc:
                raise PersistError(f"serving stopped, but the decision was not persisted: {exc}") from exc
            self.fail_closed_reason = None
            self.state = state
            return state, changed

    async def release(self, operator: str, reason: str, source: str) -> tuple[KillState, bool]:
        async with self._lock:
            changed = self.state.engaged
            try:
                state = self._record("resume", operator, reason, source, changed)
                self.store.save(state)
            except (OSError, StateError, AuditError) as exc:
                raise PersistError(f"still stopped: the resume could not be persisted: {exc}") from exc
            self.fail_closed_reason = None
            self._apply(state)
            return state, changed
