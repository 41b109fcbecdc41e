"""The edge fleet's scale curves as the decision model reads them: an operation's time on N sites.

The edge scale bench measures first converge, idempotent converge, rolling upgrade, fleet
kill and resume on growing test fleets and writes ``burden/edge-scale.json``;
``triptyque.edge.scale.ScaleModel`` reads it and predicts any fleet size: *measured* where
the bench measured that many nodes (all reachable), *modelled* otherwise, with the fit's
largest relative error on the measured points as its range. This module only wraps it for
the report: where the measurements come from (date, git revision, command), and a file
that cannot be read becomes one line naming it, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triptyque.burden.errors import BurdenError
from triptyque.edge.scale import Prediction, ScaleModel
from triptyque.errors import TargetError

SCALE_FILE = Path("burden/edge-scale.json")


@dataclass(frozen=True)
class EdgeScale:
    """A loaded scale model, with where its measurements come from."""

    model: ScaleModel
    path: str
    measured: dict[str, Any]

    @property
    def citation(self) -> str:
        m = self.measured
        return (f"{self.path}, measured {m.get('date', '?')} at git {str(m.get('revision', '?'))[:12]} "
                f"by `{m.get('command', '?')}`")

    def predict(self, operation: str, nodes: int) -> Prediction:
        """ValueError when the file has no model for ``operation``."""
        return self.model.predict(operation, nodes)

    def describe(self, operation: str, nodes: int) -> str:
        p = self.predict(operation, nodes)
        if p.kind == "measured":
            return f"{p.seconds:,.1f} s measured at {nodes} node(s) ({self.citation})"
        return (f"{p.seconds:,.1f} s modelled for {nodes} node(s), +-{p.relative_error:.0%} "
                f"({p.low:,.1f}-{p.high:,.1f} s; fitted to {self.citation})")


def load_scale(path: Path, shown: str | None = None) -> EdgeScale | None:
    """The scale model in ``path`` (named ``shown`` in the report); None when there is no such file."""
    if not path.is_file():
        return None
    try:
        model = ScaleModel.load(path)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (TargetError, ValueError) as exc:
        raise BurdenError([str(exc).replace(str(path), shown or path.name)]) from None
    found = data.get("measured")
    return EdgeScale(model, shown or path.name, found if isinstance(found, dict) else {})
