"""Exceptions raised by triptyque.

    TriptyqueError            every error meant for a user: one line, says what to fix
    +-- SpecError             the service spec is invalid (one line per problem)
    +-- StateError            the kill-switch state cannot be read or written
    +-- AuditError            the audit log is broken or was tampered with
    +-- TargetError           a target cannot be brought up, queried or stopped
        +-- MissingToolError  a binary the target needs is not installed
        +-- PortInUseError    a port the target needs is taken

The CLI prints ``str(error)`` and exits non-zero; a traceback is a bug.
"""

from __future__ import annotations


class TriptyqueError(Exception):
    """An error meant for a user: its message says what happened and what to do."""


class SpecError(TriptyqueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class StateError(TriptyqueError):
    pass


class AuditError(TriptyqueError):
    pass


class TargetError(TriptyqueError):
    pass


class MissingToolError(TargetError):
    pass


class PortInUseError(TargetError):
    pass
