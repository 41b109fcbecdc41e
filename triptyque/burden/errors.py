"""The burden package's user-facing error: one line per problem, like SpecError."""

from __future__ import annotations

from triptyque.errors import TriptyqueError


class BurdenError(TriptyqueError):
    """A scenario, figures or ledger problem; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
