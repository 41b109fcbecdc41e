"""Runs a playbook through ansible-runner, shows progress and keeps every event.

Each run gets a folder under ``<state>/runs/<ident>/``::

    events.jsonl    every event ansible-runner reported, one JSON object a line
    summary.json    playbook, status, wall time, per-host counts, failures

so the operational burden of a target (runs, duration, changes, failures) can be
measured later from files alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triptyque.edge.inventory import read_play_vars
from triptyque.errors import MissingToolError, TargetError
from triptyque.paths import project_root
from triptyque.types import Progress

PLAYBOOKS = project_root(Path(__file__)) / "playbooks"


def playbooks_dir() -> Path:
    """``playbooks/`` of this checkout, or where ``TRIPTYQUE_PLAYBOOKS`` points."""
    configured = os.environ.get("TRIPTYQUE_PLAYBOOKS")
    folder = Path(configured) if configured else PLAYBOOKS
    if not (folder / "site.yml").is_file():
        raise TargetError(f"no site.yml in {folder}: run from a triptyque checkout or set "
                          "TRIPTYQUE_PLAYBOOKS to its playbooks/ folder")
    return folder


def ansible_tool(name: str) -> str:
    """An Ansible command from this Python's environment first, then from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise MissingToolError(f"{name} not found: pip install 'triptyque[edge]'")
    return found


@dataclass
class HostCounts:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0


@dataclass
class TaskResult:
    task: str
    status: str  # ok, changed, failed, unreachable, skipped
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass
class RunSummary:
    ident: str
    playbook: str
    status: str = "unstarted"
    rc: int | None = None
    started: str = ""
    seconds: float = 0.0
    hosts: dict[str, HostCounts] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    folder: str = ""
    results: dict[str, list[TaskResult]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def result(self, host: str, task: str) -> TaskResult | None:
        """The last result of ``task`` on ``host`` (loops report their final item)."""
        found = [r for r in self.results.get(host, []) if r.task == task]
        return found[-1] if found else None


class _Recorder:
    """ansible-runner's event handler: writes each event, narrates the interesting ones."""

    def __init__(self, path: Path, progress: Progress, summary: RunSummary) -> None:
        self.handle = path.open("w", encoding="utf-8")
        self.progress, self.summary = progress, summary

    def __call__(self, event: dict[str, Any]) -> bool:
        self.handle.write(json.dumps(event, default=str) + "\n")
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host, task = data.get("host", ""), data.get("task", "")
        if kind.startswith("runner_on_") and host and kind != "runner_on_start":
            self._result(kind, data)
        if kind == "playbook_on_play_start":
            self.progress(f"play: {data.get('play', '')}")
        elif kind == "playbook_on_task_start":
            self.progress(task)
        elif kind == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            self.progress(f"{host}: {task} (changed)")
        elif kind in {"runner_on_failed", "runner_on_unreachable"} and not data.get("ignore_errors"):
            message = _message(data.get("res") or {})
            what = "unreachable" if kind == "runner_on_unreachable" else "failed"
            line = f"{host}: {task}: {what}: {message}"
            self.summary.failures.append(line)
            self.progress(line)
        elif kind == "playbook_on_stats":
            self._stats(data)
        return True

    def _result(self, kind: str, data: dict[str, Any]) -> None:
        res = data.get("res") or {}
        status = kind.removeprefix("runner_on_")
        if status == "ok" and res.get("changed"):
            status = "changed"
        self.summary.results.setdefault(data["host"], []).append(TaskResult(
            task=data.get("task", ""), status=status, seconds=float(data.get("duration") or 0.0),
            facts=res.get("ansible_facts") or {},
            message=_message(res) if status in {"failed", "unreachable"} else "",
        ))

    def _stats(self, data: dict[str, Any]) -> None:
        for key in ("ok", "changed", "failures", "dark", "skipped", "rescued"):
            for host, count in (data.get(key) or {}).items():
                counts = self.summary.hosts.setdefault(host, HostCounts())
                name = {"failures": "failed", "dark": "unreachable"}.get(key, key)
                setattr(counts, name, count)

    def close(self) -> None:
        self.handle.close()


def _message(res: dict[str, Any]) -> str:
    failed_items = [item for item in res.get("results") or [] if item.get("failed")]
    if failed_items:
        return "; ".join(_message(item) for item in failed_items)
    text = res.get("stderr") or res.get("msg") or res.get("reason") or ""
    if isinstance(text, list):
        text = " ".join(map(str, text))
    return " ".join(str(text).split())[:800] or "(no message)"


def run_playbook(
    playbook: str,
    *,
    inventory: Path,
    extravars: dict[str, Any],
    state_dir: Path,
    progress: Progress,
    tags: list[str] | None = None,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    forks: int | None = None,
) -> RunSummary:
    """Run ``playbooks/<playbook>`` and return its summary; it never raises for a failed play.
    ``forks`` None keeps playbooks/ansible.cfg's (measured at scale: bench/edge_scale.py)."""
    import ansible_runner  # the edge extra; imported here so other targets never need it

    folder = playbooks_dir()
    # The rollout's batch size and failure budget live in the inventory, where play keywords
    # cannot read them (edge.inventory.PLAY_VARS): pass them on as extra vars.
    extravars = {**read_play_vars(inventory, ansible_inventory=ansible_tool("ansible-inventory")),
                 **extravars}
    ident = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + Path(playbook).stem
    run_dir = state_dir / "runs" / ident
    run_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "runner").mkdir(exist_ok=True)
    summary = RunSummary(ident=ident, playbook=playbook, folder=str(run_dir),
                         started=datetime.now(UTC).isoformat(timespec="seconds"))
    recorder = _Recorder(run_dir / "events.jsonl", progress, summary)
    cmdline = " ".join(flag for flag, wanted in (("--check", check), ("--diff", diff)) if wanted)
    started = time.monotonic()
    try:
        result = ansible_runner.run(
            private_data_dir=str(state_dir / "runner"),
            artifact_dir=str(state_dir / "runner" / "artifacts"),
            rotate_artifacts=3,
            ident=ident,
            project_dir=str(folder),
            playbook=str(folder / playbook),
            inventory=str(inventory.resolve()),
            extravars=extravars,
            envvars={
                "ANSIBLE_CONFIG": str(folder / "ansible.cfg"),
                "PATH": f"{Path(ansible_tool('ansible-playbook')).parent}{os.pathsep}"
                        f"{os.environ.get('PATH', '')}",
                # ansible-runner turns host key checking off unless told otherwise.
                "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
            },
            tags=",".join(tags) if tags else None,
            limit=limit,
            cmdline=cmdline or None,
            forks=forks,
            event_handler=recorder,
            quiet=True,
            suppress_env_files=True,
        )
    finally:
        recorder.close()
    summary.status, summary.rc = result.status, result.rc
    summary.seconds = round(time.monotonic() - started, 3)
    if not summary.ok and not summary.failures:
        tail = (result.stdout.read() if result.stdout else "").strip().splitlines()[-5:]
        summary.failures.append(" / ".join(tail) or f"ansible-playbook exited {result.rc}")
    (run_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def require_success(summary: RunSummary, what: str) -> RunSummary:
    if not summary.ok:
        details = "\n".join(f"  {line}" for line in summary.failures[:10])
        raise TargetError(f"{what} failed on {len(summary.failures)} task(s); events in "
                          f"{summary.folder}/events.jsonl\n{details}")
    return summary
