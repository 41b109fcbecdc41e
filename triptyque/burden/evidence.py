"""A number and where it comes from: measured (a ledger entry) or modelled (figure ids)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Evidence:
    value: float
    measured: bool
    source: str
    estimate: bool = False

    @property
    def label(self) -> str:
        if self.measured:
            return "measured"
        return "modelled, estimate" if self.estimate else "modelled"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"label": self.label}
