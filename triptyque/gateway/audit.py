"""Where the kill switch's audit chain is stored: one protocol, one sink per backend.

The chain itself (hashes, order, verification) is ``chain.py``; a sink only keeps the
lines. ``AuditLog`` is the file sink of the local and edge targets; the ConfigMap sink
of the Kubernetes targets is in ``state_k8s.py``.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any, Protocol

from triptyque.errors import AuditError
from triptyque.gateway import chain
from triptyque.gateway.chain import Verified
from triptyque.gateway.state import KillState, disagreement, restrict


class AuditSink(Protocol):
    """Where the kill switch appends its audit entries (a file here; the cluster elsewhere)."""

    def describe(self) -> str: ...

    def append(self, **fields: Any) -> dict[str, Any]: ...

    def append_after(self, after: tuple[int, str] | None, fields: dict[str, Any]) -> dict[str, Any]:
        """Append, refusing a log that ends before ``after`` (the writer's last (seq, hash))."""

    def head(self) -> str | None: ...

    def check(self) -> Verified:
        """The whole chain verified (an empty or missing log is 0 entries); AuditError if broken."""

    def verify(self, expected_head: str | None = None) -> Verified: ...

    def entries_after_last(self, *actions: str) -> list[dict[str, Any]]:
        """The verified chain's entries after the last one whose action is one of ``actions``
        (all of them when none is, or when no action is given); AuditError if the chain is broken."""


class AuditLog:
    """A JSON-lines file; appends are locked and fsynced so concurrent writers stay ordered."""

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.path = path
        self.key = key

    def describe(self) -> str:
        return str(self.path)

    def append(self, **fields: Any) -> dict[str, Any]:
        return self.append_after(None, fields)

    def append_after(self, after: tuple[int, str] | None, fields: dict[str, Any]) -> dict[str, Any]:
        """Append one entry after verifying the chain (see ``chain.next_entry``); on a failed
        write or fsync (disk full) the file is cut back to where it was, so the log never
        ends in half an entry."""
        restrict(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(fd, "rb", closefd=False) as reader:
                try:
                    lines = [line.decode("utf-8") for line in reader if line.strip()]
                except UnicodeDecodeError:
                    raise AuditError(f"{self.path}: not UTF-8 text; the file was altered") from None
            entry, text = chain.next_entry(lines, str(self.path), time.time(), fields,
                                           key=self.key, after=after)
            data = (text + "\n").encode()
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

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:
            raise AuditError(f"{self.path}: not UTF-8 text; the file was altered") from None
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc.strerror}") from None
        return [line for line in text.splitlines() if line.strip()]

    def head(self) -> str | None:
        """The last entry's hash, or None when the log is empty or missing (not verified)."""
        return chain.head(self._lines(), str(self.path))

    def check(self) -> Verified:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except UnicodeDecodeError:
            raise AuditError(f"{self.path}: not UTF-8 text; the file was altered") from None
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc.strerror}") from None
        return chain.verify(text.splitlines(), lambda n: f"{self.path}:{n}", str(self.path), key=self.key)

    def entries_after_last(self, *actions: str) -> list[dict[str, Any]]:
        return chain.entries_after_last(self._lines(), lambda n: f"{self.path}:{n}", str(self.path), *actions,
                                        key=self.key)

    def verify(self, expected_head: str | None = None) -> Verified:
        """Walk the chain; raise AuditError naming the first bad line."""
        if not self.path.exists():
            raise AuditError(f"{self.path}: no audit log here")
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise AuditError(f"{self.path}: not UTF-8 text; the file was altered") from None
        return chain.verify(text.splitlines(), lambda n: f"{self.path}:{n}", str(self.path), expected_head,
                            key=self.key)


def verify_with_state(log: AuditSink, state: KillState | None, key: bytes | None = None) -> Verified:
    """The chain verified, and the stored state checked against its last entry (hash,
    sequence, action, signature); AuditError says what disagrees."""
    verified = log.verify(state.audit_head if state is not None else None)
    problem = disagreement(state, verified, key)
    if problem is not None:
        raise AuditError(f"{log.describe()}: state and log disagree: {problem}")
    return verified
