"""The evidence package's user-facing error: one line that says what is wrong."""

from __future__ import annotations

from triptyque.errors import TriptyqueError


class EvidenceError(TriptyqueError):
    """A key, a bundle or one of its files is missing, unreadable or does not match."""
