"""What the CLI's drill, compare and ledger commands do, so that cli.py stays thin."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from triptyque.burden.compare import Comparison, compare
from triptyque.burden.deployed import read_cloud_deployment
from triptyque.burden.drills import DRILLS, DrillResult, available, run_drill
from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import load_figures
from triptyque.burden.hooks import hooks_for
from triptyque.burden.inputs import fingerprint
from triptyque.burden.ledger import KINDS, LEDGER_FILE, Kind, Ledger
from triptyque.burden.report import write_report, write_side_by_side
from triptyque.burden.scenario import load_scenario
from triptyque.burden.static import load_skills
from triptyque.errors import TriptyqueError
from triptyque.paths import project_root
from triptyque.spec import ServiceSpec
from triptyque.targets.base import Target
from triptyque.types import NodeReport, Progress

PROJECT_ROOT = project_root(Path(__file__))


def ledger_at(state_dir: Path, path: Path | None = None) -> Ledger:
    """The ledger a command uses: ``--ledger`` when given, else ``<state dir>/ledger.sqlite``."""
    return Ledger(path or state_dir / LEDGER_FILE)


def recorded_in(state_dir: Path, kind: str, target: Target,
                details: dict[str, Any] | None = None) -> AbstractContextManager[dict[str, Any]]:
    """``recorded`` into the ledger the CLI uses (``TRIPTYQUE_LEDGER``, else STATE_DIR/ledger.sqlite)."""
    if kind not in KINDS:
        raise BurdenError([f"ledger: unknown kind {kind!r}; use one of {', '.join(KINDS)}"])
    configured = os.environ.get("TRIPTYQUE_LEDGER")
    return recorded(ledger_at(state_dir, Path(configured) if configured else None), kind, target,
                    details)


def drill_names(which: str, target: Target) -> list[str]:
    """``all`` (every drill the target supports, deploy first), one name, or a comma-separated list."""
    hooks = hooks_for(target)
    if which == "all":
        return available(hooks)
    names = [n.strip() for n in which.split(",") if n.strip()]
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        raise BurdenError([f"unknown drill {n!r}; use one of {', '.join(DRILLS)} or all" for n in unknown])
    return names


def run_drills(target: Target, names: list[str], *, ledger: Ledger, operator: str,
               progress: Progress) -> list[DrillResult]:
    hooks = hooks_for(target)
    return [run_drill(name, target, hooks, ledger=ledger, operator=operator, progress=progress) for name in names]


def build_report(*, scenario_path: Path, out_dir: Path, ledger: Ledger, figures_path: Path, skills_path: Path,
                 spec: ServiceSpec | None, root: Path = PROJECT_ROOT, rendered: Path | None = None,
                 spec_path: Path | None = None) -> tuple[Comparison, dict[str, Path]]:
    figures = load_figures(figures_path)
    scenario, figures = load_scenario(scenario_path, figures)
    deployment = read_cloud_deployment(root)
    inputs = {"scenario": fingerprint(scenario_path), "figures": fingerprint(figures_path),
              "skills": fingerprint(skills_path), "cloud_stack": fingerprint(Path(deployment.source)),
              "dependencies": fingerprint(root / "burden" / "dependencies.yaml"),
              "staffing": fingerprint(root / "burden" / "staffing.yaml")}
    if (root / "burden" / "edge-scale.json").is_file():
        inputs["edge_scale"] = fingerprint(root / "burden" / "edge-scale.json")
    if spec_path is not None:
        inputs["spec"] = fingerprint(spec_path)
    provenance = {"spec_hash": spec.spec_hash() if spec else None, "inputs": inputs}
    comparison = compare(scenario, figures, load_skills(skills_path), root=root, ledger=ledger,
                         scenario_path=scenario_path, spec_version=spec.engine.version if spec else None,
                         rendered=rendered, provenance=provenance, deployment=deployment)
    return comparison, write_report(comparison, out_dir)


def build_reports(*, scenario_paths: list[Path], out_dir: Path, ledger: Ledger, figures_path: Path,
                  skills_path: Path, spec: ServiceSpec | None, root: Path = PROJECT_ROOT, rendered: Path | None = None,
                  spec_path: Path | None = None) -> dict[str, Path]:
    """One report per scenario; several scenarios go to OUT/<name>/ with a side-by-side page in OUT.

    Every scenario is validated before anything is written, so one bad file writes nothing.
    """
    figures = load_figures(figures_path)
    problems: list[str] = []
    for path in scenario_paths:
        try:
            load_scenario(path, figures)
        except BurdenError as exc:
            problems += exc.problems
    if problems:
        raise BurdenError(problems)
    common: dict[str, Any] = {"ledger": ledger, "figures_path": figures_path, "skills_path": skills_path,
                              "spec": spec, "root": root, "rendered": rendered, "spec_path": spec_path}
    if len(scenario_paths) == 1:
        return build_report(scenario_path=scenario_paths[0], out_dir=out_dir, **common)[1]
    comparisons: list[tuple[Comparison, dict[str, Path]]] = []
    paths: dict[str, Path] = {}
    for index, path in enumerate(scenario_paths, start=1):
        folder = out_dir / f"{index}-{path.stem}"
        comparison, written = build_report(scenario_path=path, out_dir=folder, **common)
        comparisons.append((comparison, written))
        paths |= {f"{path.stem} {kind}": p for kind, p in written.items()}
    return write_side_by_side(comparisons, out_dir) | paths


def _append(ledger: Ledger, kind: Kind, target: str, **fields: Any) -> None:
    """Record, or warn on stderr: an unwritable ledger must not turn a done kill into a failure."""
    try:
        ledger.record(kind, kind, target=target, **fields)
    except BurdenError as exc:
        print(f"warning: not recorded in the ledger: {exc}", file=sys.stderr)


@contextmanager
def recorded(ledger: Ledger, kind: Kind, target: Target, details: dict[str, Any] | None = None,
             ) -> Iterator[dict[str, Any]]:
    """Time a deploy, down, kill or resume and append it to the ledger, failed or not.

    The body may put node reports under ``result["reports"]``; they are kept per node.
    """
    result: dict[str, Any] = {}
    spec = getattr(target, "spec", None)
    started = time.perf_counter()
    try:
        yield result
    except TriptyqueError as exc:
        _append(ledger, kind, target.name, outcome="failed", seconds=time.perf_counter() - started, spec=spec,
                details={**(details or {}), "error": str(exc).splitlines()[0]})
        raise
    reports: list[NodeReport] = result.get("reports", [])
    ok = all(r.reachable for r in reports)
    _append(ledger, kind, target.name, outcome="ok" if ok else "failed", seconds=time.perf_counter() - started,
            spec=spec, metrics={"slowest_node_seconds": max((r.seconds for r in reports), default=0.0)},
            details={**(details or {}), "nodes": [r.as_dict() for r in reports]})
