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


class AuditSink(Protocol):
    """Where the kill switch appends its audit entries (a file here; the cluster elsewhere)."""

    def describe(self) -> str: ...

    def append(self, **fields: Any) -> dict[str, Any]: ...

    def head(self) -> str | None: ...

    def verify(self, expected_head: str | None = None) -> Verified: ...


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
            with open(fd, "rb", closefd=False) as reader:
                lines = [line.decode("utf-8", "replace") for line in reader if line.strip()]
            entry, text = chain.next_entry(lines, str(self.path), time.time(), fields)
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
        return [line for line in text.splitlines() if line.strip()]

    def head(self) -> str | None:
        """The last entry's hash, or None when the log is empty or missing (not verified)."""
        return chain.head(self._lines(), str(self.path))

    def verify(self, expected_head: str | None = None) -> Verified:
        """Walk the chain; raise AuditError naming the first bad line."""
        if not self.path.exists():
            raise AuditError(f"{self.path}: no audit log here")
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise AuditError(f"{self.path}: not UTF-8 text; the file was altered") from None
        return chain.verify(text.splitlines(), lambda n: f"{self.path}:{n}", str(self.path), expected_head)
