"""The demo's measured part: its deploy is the deploy drill, it ends with drills and the report.

The ledger and the report live next to the local target's state (``.triptyque/ledger.sqlite``
and ``.triptyque/report/``), where ``triptyque compare`` and ``triptyque ledger`` look.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from triptyque.burden.commands import PROJECT_ROOT, build_report
from triptyque.burden.drills import DrillResult, run_drill
from triptyque.burden.ledger import LEDGER_FILE, Ledger
from triptyque.errors import TargetError
from triptyque.targets.local import LocalTarget
from triptyque.types import Endpoint, Progress

DEMO_DRILLS = ("kill-soft", "kill-hard", "engine-crash")
DEMO_SCENARIO = PROJECT_ROOT / "burden" / "scenarios" / "departmental.yaml"


def demo_ledger(target: LocalTarget) -> Ledger:
    return Ledger(target.root.parent / LEDGER_FILE)


def measured_deploy(target: LocalTarget, progress: Progress) -> list[Endpoint]:
    """``target.up`` run as the deploy drill, so its phases land in the ledger."""
    result = run_drill("deploy", target, target.drill_hooks(), ledger=demo_ledger(target), operator="demo",
                       progress=progress)
    if result.outcome != "ok":
        raise TargetError(f"the deploy failed: {result.error}")
    return target.endpoints()


def run_drills(target: LocalTarget, progress: Progress) -> list[DrillResult]:
    hooks = target.drill_hooks()
    return [run_drill(name, target, hooks, ledger=demo_ledger(target), operator="demo", progress=progress)
            for name in DEMO_DRILLS]


def show_drills(results: list[DrillResult], console: Console) -> None:
    names = {"time_to_refuse_all_seconds": "all refuse", "time_to_serve_again_seconds": "serving again",
             "time_to_restore_seconds": "restored", "detection_seconds": "detected"}
    for result in results:
        figures = ", ".join(f"{label} after {result.metrics[key]:.2f} s" for key, label in names.items()
                            if key in result.metrics)
        status = "[green]ok[/]" if result.outcome == "ok" else f"[red]failed[/] {result.error}"
        console.print(f"   {result.drill:<13} {status}  {figures}  (ledger #{result.entry_id}, "
                      f"{result.human_steps} human step(s))")


def write_report(target: LocalTarget, console: Console, scenario: Path = DEMO_SCENARIO) -> dict[str, Path]:
    _comparison, paths = build_report(
        scenario_path=scenario, out_dir=target.root.parent / "report", ledger=demo_ledger(target),
        figures_path=PROJECT_ROOT / "burden" / "figures.yaml", skills_path=PROJECT_ROOT / "burden" / "skills.yaml",
        spec=target.spec)
    console.print(f"\n[bold]6. The comparison report[/] (local drills measured, Kubernetes modelled, "
                  f"scenario {scenario.name}):")
    for kind, path in paths.items():
        console.print(f"   {kind:<9} {path}")
    return paths
