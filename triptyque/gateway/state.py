"""Where the kill-switch state lives: one interface, one backend per kind of target.

``FileStateStore`` (local, edge) keeps a JSON file written atomically: a temporary
file in the same folder, fsynced, renamed over the old one, folder fsynced. A reader
sees the old state or the new one, never half of either. The cluster backend
(Kubernetes targets) implements the same ``StateStore`` protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from triptyque.errors import StateError
from triptyque.gateway import chain
from triptyque.gateway.chain import Verified

# The state folder holds the decision and its audit chain: only the gateway's user may enter it.
STATE_DIR_MODE = 0o700


class KillState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engaged: bool = False
    operator: str | None = None
    reason: str | None = None
    changed_at: float | None = None
    audit_head: str | None = None
    audit_seq: int | None = None  # absent in states written before it was recorded
    mac: str | None = None  # HMAC of the other fields with the audit key, when there is one

    def signed(self, key: bytes | None) -> KillState:
        if key is None:
            return self
        return self.model_copy(update={"mac": chain.mac(key, self._payload())})

    def _payload(self) -> bytes:
        return chain.canonical(self.model_dump(mode="json", exclude={"mac"}))

    def signature_ok(self, key: bytes) -> bool:
        return chain.mac_ok(key, self._payload(), self.mac)


def disagreement(state: KillState | None, log: Verified, key: bytes | None = None) -> str | None:
    """Why the stored state and the audit chain do not tell the same story, or None.

    They must agree on the last decision: its hash, its sequence and its action. A state
    that is missing while the log has entries, or the reverse, disagrees too.
    """
    if state is None:
        return None if log.entries == 0 else f"the state is missing but the audit log has {log.entries} entries"
    if key is not None and not state.signature_ok(key):
        return "the state is not signed with the audit key (written by someone else)"
    if state.audit_head is None:
        if log.entries:
            return f"the state records no audit entry but the audit log has {log.entries}"
        return None if not state.engaged else "the state says engaged but the audit log is empty"
    if log.entries == 0:
        return f"the state records audit entry {state.audit_seq or '?'} but the audit log is empty"
    if state.audit_head != log.head or (state.audit_seq is not None and state.audit_seq != log.seq):
        return (f"the state records audit entry {state.audit_seq or '?'} ({state.audit_head[:12]}) "
                f"but the audit log ends at entry {log.seq} ({log.head[:12]})")
    if state.engaged != (log.action in chain.ENGAGED_AFTER):
        return (f"the state says {'engaged' if state.engaged else 'released'} but the last audit "
                f"entry ({log.seq}) is a {log.action or 'missing action'}")
    return None


def restrict(folder: Path) -> None:
    """Create ``folder`` for the gateway's user alone (mode 0700); best effort on a folder owned by another."""
    folder.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
    try:
        if folder.stat().st_mode & 0o777 != STATE_DIR_MODE:
            folder.chmod(STATE_DIR_MODE)
    except OSError:
        pass


@dataclass(frozen=True)
class Loaded:
    """What a store read: the stored state, or None when nothing was ever stored."""

    state: KillState | None


@dataclass(frozen=True)
class Unreadable:
    """The store cannot vouch for any state (corrupt, deleted, unreachable): fail closed."""

    reason: str


Observed = Loaded | Unreadable


class StateStore(Protocol):
    def describe(self) -> str:
        """Where the state lives, for messages."""

    def load(self) -> KillState | None:
        """The stored state; None when nothing was ever stored. StateError if unreadable."""

    def save(self, state: KillState) -> None:
        """Store atomically; StateError when it cannot be written (nothing half-written)."""

    def watch(self, interval: float) -> AsyncIterator[Observed]:
        """Yield what is stored each time another writer changes it."""


class FileStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def load(self) -> KillState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read kill-switch state {self.path}: {exc.strerror}") from None
        try:
            return KillState.model_validate_json(raw)
        except RecursionError:
            raise StateError(f"kill-switch state {self.path} is corrupt (nested too deeply)") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StateError(
                f"kill-switch state {self.path} is corrupt ({first['msg']}); "
                "resume explicitly once you have checked why"
            ) from None

    def save(self, state: KillState) -> None:
        folder = self.path.parent
        try:
            restrict(folder)
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=folder)
        except OSError as exc:
            raise StateError(f"cannot write kill-switch state in {folder}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(state.model_dump(mode="json"), sort_keys=True))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StateError(f"cannot write kill-switch state {self.path}: {exc.strerror}") from None

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    async def watch(self, interval: float) -> AsyncIterator[Observed]:
        last = self._signature()
        while True:
            await asyncio.sleep(interval)
            current = self._signature()
            if current != last:
                last = current
                try:
                    yield Loaded(self.load())
                except StateError as exc:
                    yield Unreadable(str(exc))
