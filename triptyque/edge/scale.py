"""How long the edge operations take as the fleet grows: a model fitted to measurements.

``bench/edge_scale.py`` measures first converge, idempotent converge, rolling upgrade,
fleet kill and resume on 2 to 32 test-fleet nodes and writes ``burden/edge-scale.json``;
this module fits and reads it (pure: no I/O beyond that file).

For one operation on N nodes::

    seconds = fixed + per_batch * ceil(N / batch) + per_node * N / parallelism

which is how Ansible spends its time. The linear strategy runs each task "in lockstep per
host batch as defined by serial (default all). Up to the fork limit of hosts will execute
each task at the same time and then the next series of hosts until the batch is done"
(https://docs.ansible.com/ansible/latest/collections/ansible/builtin/linear_strategy.html),
so a task over N hosts costs about ``N / forks`` times one host's turn: ``per_node`` is one
host's turn summed over the play and ``parallelism`` is ``forks``. With ``serial`` the play
runs batch after batch, "to completion of the play before the next batch starts"
(https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_strategies.html), each
waiting for its slowest host (the rollout's restart and health gate): ``per_batch`` times
``ceil(N / serial)``.
Plays without ``serial`` are one batch, whose cost is part of ``fixed`` (start-up, inventory,
fact cache). The kill switch and resume are HTTP calls to every gateway at once
(``triptyque.targets.base.admin_fleet``): one batch, ``parallelism`` 1, so ``per_node`` is
what each extra node adds.

The coefficients are fitted by non-negative least squares on relative errors (the points
span two orders of magnitude). ``per_node`` is an effective value for the controller that
was measured: when the controller's CPUs, not ``forks``, limit the parallelism, the fit
absorbs it. A prediction carries the fit's largest relative error on the measured points;
beyond the largest measured fleet, the larger of that and the extrapolation error (the
model fitted without its largest fleet, checked against it). Beyond that it assumes the same
linear regime: no new bottleneck on the controller (memory, file descriptors, SSH).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from triptyque.errors import TargetError

Operation = Literal["converge", "idempotent", "upgrade", "kill", "resume"]
OPERATIONS: tuple[Operation, ...] = ("converge", "idempotent", "upgrade", "kill", "resume")
# The operations a serial batch size applies to (site.yml's rollout play).
BATCHED: frozenset[str] = frozenset({"upgrade"})
# Plain HTTP to every gateway at once, not Ansible.
HTTP: frozenset[str] = frozenset({"kill", "resume"})
SCHEMA = 1


@dataclass(frozen=True)
class Point:
    operation: str
    nodes: int
    unreachable: int
    seconds: float


@dataclass(frozen=True)
class Prediction:
    seconds: float
    low: float
    high: float
    kind: Literal["measured", "modelled"]
    relative_error: float


@dataclass(frozen=True)
class Fit:
    fixed: float
    per_batch: float
    per_node: float
    batch: int | None  # None: one batch, whatever the fleet
    parallelism: int
    max_relative_error: float

    def seconds(self, nodes: int) -> float:
        batches = math.ceil(nodes / self.batch) if self.batch else 1
        return self.fixed + self.per_batch * batches + self.per_node * nodes / self.parallelism


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when the system is singular."""
    size = len(vector)
    rows = [[*row, value] for row, value in zip(matrix, vector, strict=True)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-12:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(size):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][size] / rows[i][i] for i in range(size)]


def _nnls_relative(columns: Sequence[Sequence[float]], targets: Sequence[float]) -> list[float]:
    """Non-negative coefficients minimising the sum of squared relative errors. Few columns,
    so every subset is tried (the active-set answer, found by enumeration)."""
    best: tuple[float, list[float]] | None = None
    count = len(columns)
    for size in range(1, count + 1):
        for subset in itertools.combinations(range(count), size):
            # Weighted by 1/y: rows scaled so that residuals are relative errors.
            design = [[columns[c][i] / y for c in subset] for i, y in enumerate(targets)]
            normal = [[sum(row[a] * row[b] for row in design) for b in range(size)] for a in range(size)]
            rhs = [sum(row[a] for row in design) for a in range(size)]
            solved = _solve(normal, rhs)
            if solved is None or any(v < 0 for v in solved):
                continue
            coefficients = [0.0] * count
            for c, value in zip(subset, solved, strict=True):
                coefficients[c] = value
            error = sum((sum(coefficients[c] * columns[c][i] for c in range(count)) - y) ** 2 / y ** 2
                        for i, y in enumerate(targets))
            if best is None or error < best[0] - 1e-15:
                best = (error, coefficients)
    return best[1] if best else [0.0] * count


def fit_operation(operation: str, points: Sequence[Point], *, batch: int | None,
                  parallelism: int) -> Fit:
    if not points:
        raise ValueError(f"no measured points for {operation}")
    if any(p.seconds <= 0 for p in points):
        raise ValueError(f"{operation}: a measured duration is not positive")
    ones = [1.0 for _ in points]
    per_node = [p.nodes / parallelism for p in points]
    if batch:
        batches = [float(math.ceil(p.nodes / batch)) for p in points]
        fixed, per_batch, node = _nnls_relative([ones, batches, per_node], [p.seconds for p in points])
    else:
        fixed, node = _nnls_relative([ones, per_node], [p.seconds for p in points])
        per_batch = 0.0
    draft = Fit(fixed, per_batch, node, batch, parallelism, 0.0)
    worst = max(abs(draft.seconds(p.nodes) - p.seconds) / p.seconds for p in points)
    return Fit(round(fixed, 6), round(per_batch, 6), round(node, 6), batch, parallelism,
               round(worst, 6))


class ScaleModel:
    """Measured points and the fit per operation; ``predict`` answers for any fleet size."""

    def __init__(self, fits: Mapping[str, Fit], points: Iterable[Point],
                 settings: Mapping[str, Any]) -> None:
        self.fits = dict(fits)
        self.points = list(points)
        self.settings = dict(settings)
        self.extrapolation_errors = {op: self._extrapolation_error(op) for op in self.fits}

    def _fitted(self, operation: str) -> list[Point]:
        return [p for p in self.points if p.operation == operation and p.unreachable == 0]

    def _extrapolation_error(self, operation: str) -> float:
        """How far off the model was beyond what it saw: fitted without the largest fleet, its
        relative error there (0 with fewer than three fleet sizes: nothing to hold out)."""
        points = self._fitted(operation)
        largest = max((p.nodes for p in points), default=0)
        rest = [p for p in points if p.nodes < largest]
        if len({p.nodes for p in rest}) < 2:
            return 0.0
        fit = self.fits[operation]
        held_out = fit_operation(operation, rest, batch=fit.batch, parallelism=fit.parallelism)
        return max(abs(held_out.seconds(p.nodes) - p.seconds) / p.seconds
                   for p in points if p.nodes == largest)

    @classmethod
    def fit(cls, points: Iterable[Point | Mapping[str, Any]], settings: Mapping[str, Any]) -> ScaleModel:
        """``settings`` gives ``forks`` (the parallelism of Ansible runs) and ``serial`` (the
        rollout's batch size); only points with every node reachable are fitted."""
        parsed = [p if isinstance(p, Point) else _point(p) for p in points]
        forks, serial = int(settings["forks"]), int(settings["serial"])
        fits: dict[str, Fit] = {}
        for operation in OPERATIONS:
            mine = [p for p in parsed if p.operation == operation and p.unreachable == 0]
            if mine:
                fits[operation] = fit_operation(
                    operation, mine, batch=serial if operation in BATCHED else None,
                    parallelism=1 if operation in HTTP else forks)
        return cls(fits, parsed, settings)

    @classmethod
    def load(cls, path: Path) -> ScaleModel:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TargetError(f"{path} not found: measure it with `python -m bench --only edge-scale` "
                              "(root, about an hour)") from None
        except ValueError as exc:
            raise TargetError(f"{path} is not JSON ({exc}): measure it again") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise TargetError(f"{path}: expected schema {SCHEMA} of the edge scale data")
        try:
            fits = {op: Fit(**{k: v for k, v in params.items() if k in Fit.__dataclass_fields__})
                    for op, params in data["fit"].items()}
            points = [_point(p) for p in data["points"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetError(f"{path}: malformed edge scale data ({exc}): measure it again") from None
        return cls(fits, points, data.get("settings", {}))

    def predict(self, operation: str, nodes: int) -> Prediction:
        if operation not in self.fits:
            raise ValueError(f"no model for operation {operation!r}: use one of "
                             f"{', '.join(sorted(self.fits))}")
        if nodes < 1:
            raise ValueError(f"nodes must be at least 1, not {nodes}")
        measured = [p.seconds for p in self.points
                    if p.operation == operation and p.nodes == nodes and p.unreachable == 0]
        if measured:
            mean = sum(measured) / len(measured)
            spread = (max(measured) - min(measured)) / 2 / mean
            return Prediction(mean, min(measured), max(measured), "measured", spread)
        fit = self.fits[operation]
        seconds = fit.seconds(nodes)
        error = fit.max_relative_error
        if nodes > max(p.nodes for p in self._fitted(operation)):
            error = max(error, self.extrapolation_errors[operation])
        return Prediction(seconds, seconds * max(0.0, 1 - error), seconds * (1 + error), "modelled", error)

    def as_dict(self, measured: Mapping[str, Any]) -> dict[str, Any]:
        """The ``burden/edge-scale.json`` layout (schema 1)."""
        return {
            "schema": SCHEMA,
            "measured": dict(measured),
            "settings": self.settings,
            "points": [asdict(p) for p in self.points],
            "fit": {op: asdict(fit) for op, fit in self.fits.items()},
        }


def _point(raw: Mapping[str, Any]) -> Point:
    return Point(str(raw["operation"]), int(raw["nodes"]), int(raw.get("unreachable", 0)),
                 float(raw["seconds"]))
