"""One row per measured target: what was compared, both sides, the ratio, the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Row:
    group: str
    metric: str
    reference: float  # the direct call (or the unloaded run); NaN where there is none
    measured: float  # through the gateway (or under load)
    unit: str
    ratio: float | None  # measured / reference where a ratio is the target
    target: str
    ok: bool | None  # None: reported, no target

    def cells(self) -> list[str]:
        verdict = "-" if self.ok is None else ("ok" if self.ok else "MISSED")
        ratio = "-" if self.ratio is None or math.isnan(self.ratio) else f"{self.ratio:.3f}"
        return [self.group, self.metric, _num(self.reference, self.unit), _num(self.measured, self.unit),
                ratio, self.target, verdict]


HEADER = ["workload", "metric", "direct / reference", "gateway / measured", "ratio", "target", ""]


def _num(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "rps":
        return f"{value:.0f} req/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g} {unit}".strip()


def table(rows: list[Row], markdown: bool = False) -> str:
    cells = [HEADER] + [row.cells() for row in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(c) + " |" for c in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))).rstrip() for c in cells)
