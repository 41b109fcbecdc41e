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


class KillState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engaged: bool = False
    operator: str | None = None
    reason: str | None = None
    changed_at: float | None = None
    audit_head: str | None = None


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
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StateError(
                f"kill-switch state {self.path} is corrupt ({first['msg']}); "
                "resume explicitly once you have checked why"
            ) from None

    def save(self, state: KillState) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
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
