"""Edge at scale: the edge target's operations timed on 2 to 32 test-fleet nodes, and a model.

Each node is a real Debian host of the edge test fleet (``tests/support/fleet.py``:
systemd-nspawn, its own overlayfs and network namespace, reached over SSH) converged by
the edge target exactly as ``triptyque up edge`` does: the same roles, the real gateway,
the real hardened systemd units, the real health gate. Only the engine differs: the
inventory gives every node the ``fake`` engine profile (``triptyque_engine_device: fake``),
a canned OpenAI-compatible server (``bench/fake_engine.py``), and the bundle then carries
no vLLM wheels. The vLLM engine is not what scales here (it is one process per node whose
start-up the health gate waits for; ``bench/edge_fleet.py`` times the real one): what grows
with the number of sites is the controller's work, SSH, copies and batches.

Measured for each fleet size: first converge, idempotent converge, rolling upgrade (a new
release on every node, ``triptyque_serial`` nodes at a time, set in the inventory), fleet
kill and resume (time until the last gateway refuses, then serves again), with the
controller's CPU and memory (the Ansible processes: ansible-playbook, its forks and SSH).
With 5 % and 25 % of the nodes offline the same operations must finish, name the missing
nodes and leave the others on the right release. Ansible settings that matter at scale are
compared side by side on the largest fleet. ``triptyque.edge.scale`` fits the curves and
predicts 100, 500 and 1,000 sites; the result is written to ``burden/edge-scale.json``.

Needs root. About 2 h on a 2-core machine (2-16 nodes with the comparison and the offline
runs: 70 min; 32 nodes: 47 min). ``--extend`` adds sizes to the JSON of a run cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.report import Row
from triptyque.edge.scale import OPERATIONS, Point, ScaleModel
from triptyque.paths import project_root
from triptyque.spec import DEFAULT_SPEC, ServiceSpec, load_spec

ROOT = project_root(Path(__file__))
CACHE = Path(os.environ.get("TRIPTYQUE_CACHE", ROOT / ".cache" / "triptyque"))
OUTPUT = ROOT / "burden" / "edge-scale.json"
SIZES = (2, 4, 8, 16, 32)
SERIAL = 4  # the inventory's triptyque_serial: nodes the rolling upgrade restarts at once
OFFLINE_SHARES = (0.05, 0.25)
PREDICT = (100, 500, 1000)
# Short: the socket path (this folder plus a 40-character hash) must fit a Unix socket name.
CONTROL_PATH_DIR = Path("/tmp") / f"tqcp-{os.getpid()}"
STAGED = "Configure | Describe the staged release for the rollout"
Say = Callable[[str], None]


# ---- Ansible settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What a run sets through Ansible's environment variables, which beat ansible.cfg
    (https://docs.ansible.com/ansible/latest/reference_appendices/config.html)."""

    name: str
    forks: int = 10
    pipelining: bool = True
    control_persist: bool = True
    strategy: str = "linear"

    def environment(self) -> dict[str, str]:
        ssh = ("-o ControlMaster=auto -o ControlPersist=120s" if self.control_persist
               else "-o ControlMaster=no")
        return {"ANSIBLE_FORKS": str(self.forks), "ANSIBLE_PIPELINING": str(self.pipelining),
                "ANSIBLE_SSH_ARGS": f"{ssh} -o ServerAliveInterval=15",
                "ANSIBLE_STRATEGY": self.strategy,
                # The bench's own SSH masters, told apart from other Ansible runs on the machine.
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(CONTROL_PATH_DIR)}

    def as_dict(self) -> dict[str, Any]:
        return {"forks": self.forks, "pipelining": self.pipelining,
                "control_persist": "120s" if self.control_persist else "off",
                "strategy": self.strategy}


def read_defaults(cfg: Path = ROOT / "playbooks" / "ansible.cfg") -> Settings:
    """The settings playbooks/ansible.cfg gives every run."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(cfg)
    ssh_args = parser.get("ssh_connection", "ssh_args", fallback="")
    return Settings("ansible.cfg", forks=parser.getint("defaults", "forks", fallback=5),
                    pipelining=parser.getboolean("ssh_connection", "pipelining", fallback=False),
                    control_persist="ControlPersist" in ssh_args,
                    strategy=parser.get("defaults", "strategy", fallback="linear"))


def variants(base: Settings, nodes: int) -> list[Settings]:
    """One setting changed at a time from ``base``, the way each would be tried in production."""
    out = [Settings("as configured", base.forks, base.pipelining, base.control_persist, base.strategy)]
    for forks in sorted({5, nodes} - {base.forks}):
        out.append(Settings(f"forks={forks}", forks, base.pipelining, base.control_persist, base.strategy))
    out.append(Settings(f"pipelining={'off' if base.pipelining else 'on'}", base.forks,
                        not base.pipelining, base.control_persist, base.strategy))
    out.append(Settings(f"ControlPersist {'off' if base.control_persist else 'on'}", base.forks,
                        base.pipelining, not base.control_persist, base.strategy))
    other = "free" if base.strategy == "linear" else "linear"
    out.append(Settings(f"strategy={other}", base.forks, base.pipelining, base.control_persist, other))
    return out


@contextlib.contextmanager
def applied(settings: Settings) -> Iterator[None]:
    """ansible-runner starts ansible-playbook with this process's environment plus its own."""
    saved = {k: os.environ.get(k) for k in settings.environment()}
    os.environ.update(settings.environment())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- the controller's resources -----------------------------------------------------------


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0


class ControllerUsage:
    """CPU and memory of the Ansible processes during one operation.

    CPU: this process's reaped children (ansible-playbook, its forks and SSH clients are
    reaped up the chain, so os.times() counts them exactly) plus the SSH ControlPersist
    masters, which detach and are sampled. Memory: the peak of the summed RSS of those
    processes, sampled every 0.5 s (shared pages counted in each: an upper bound)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self._stop = threading.Event()
        self._masters: dict[int, float] = {}
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ControllerUsage:
        self._start = os.times()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        end = os.times()
        children = (end.children_user - self._start.children_user
                    + end.children_system - self._start.children_system)
        self.usage.cpu_seconds = round(children + sum(self._masters.values()), 2)

    def _processes(self) -> list[psutil.Process]:
        mine = psutil.Process().children(recursive=True)
        found = [p for p in mine if _is_ansible(p)]
        for process in psutil.process_iter(["name", "cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if process.info.get("name") == "ssh" and any(str(CONTROL_PATH_DIR) in part for part in cmdline):
                found.append(process)
        return found

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            for process in self._processes():
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
                    if process.name() == "ssh" and process.ppid() == 1:
                        times = process.cpu_times()
                        self._masters[process.pid] = times.user + times.system
            self.usage.peak_rss_mib = max(self.usage.peak_rss_mib, total / (1 << 20))
            self._stop.wait(0.5)


def _is_ansible(process: psutil.Process) -> bool:
    try:
        name = process.name()
        return name == "ssh" or any("ansible" in part for part in process.cmdline()[:3])
    except psutil.Error:
        return False


# ---- one fleet, its operations ------------------------------------------------------------


@dataclass
class Outcome:
    operation: str
    nodes: int
    unreachable: int
    seconds: float
    ok: bool
    missing: list[str]
    usage: Usage
    problems: list[str] = field(default_factory=list)
    settings: str = ""

    def point(self) -> Point:
        return Point(self.operation, self.nodes, self.unreachable, round(self.seconds, 3))


class ScaleFleet:
    """A booted fleet of fake-engine nodes and the edge target that converges it."""

    def __init__(self, fleet: Any, spec: ServiceSpec, workdir: Path, bundle_dir: Path,
                 serial: int = SERIAL, say: Say = print) -> None:
        self.fleet, self.spec, self.say = fleet, spec, say
        self.workdir, self.bundle_dir = workdir, bundle_dir
        workdir.mkdir(parents=True, exist_ok=True)
        self.inventory = fleet.write_inventory(workdir / "inventory.yml", engine="fake",
                                               group_vars={"triptyque_serial": serial})
        self.release = 0
        self.offline: list[str] = []
        self.returned: list[str] = []  # back online, behind the others until the next converge

    @property
    def size(self) -> int:
        return len(self.fleet.nodes)

    def target(self) -> Any:
        from triptyque.targets.edge import EdgeTarget

        # A new release is a new input: an engine variable every node's release id depends on.
        env = {**self.spec.engine.env, "TRIPTYQUE_SCALE_RELEASE": str(self.release)}
        spec = self.spec.model_copy(update={"engine": self.spec.engine.model_copy(update={"env": env})})
        return EdgeTarget(spec, self.workdir / "edge", self.inventory, bundle_dir=self.bundle_dir,
                          cache_dir=CACHE)

    def disconnect(self, count: int) -> list[str]:
        """Have the last ``count`` nodes offline (sites that lost their link)."""
        wanted = [n.name for n in self.fleet.nodes[self.size - count:]] if count else []
        for name in wanted:
            if name not in self.offline:
                self.fleet.disconnect(name)
        self.offline = wanted
        return self.offline

    def reconnect(self) -> None:
        for name in self.offline:
            self.fleet.reconnect(name)
        self.returned, self.offline = self.offline, []

    def run(self, operation: str) -> Outcome:
        return self.switch(operation) if operation in ("kill", "resume") else self.converge(operation)

    def converge(self, operation: str, settings: Settings | None = None) -> Outcome:
        if operation == "upgrade":
            self.release += 1
        target = self.target()
        with applied(settings or read_defaults()), ControllerUsage() as usage:
            started = time.monotonic()
            summary = target.converge(lambda _line: None)
            seconds = time.monotonic() - started
        unreachable = sorted(h for h, c in summary.hosts.items() if c.unreachable)
        failed = sorted(h for h, c in summary.hosts.items() if c.failed and not c.unreachable)
        problems = [f"{h} failed: {line}" for h in failed for line in summary.failures if line.startswith(h)]
        if unreachable != sorted(self.offline):
            problems.append(f"unreachable {unreachable}, offline {sorted(self.offline)}")
        problems += self._check_serving(summary)
        if operation in ("idempotent", "catch-up"):
            # A catch-up converge changes the sites that come back, and only them.
            behind = set(self.returned) if operation == "catch-up" else set()
            changed = {h: c.changed for h, c in summary.hosts.items() if c.changed and h not in behind}
            if changed:
                problems.append(f"an idempotent run changed {changed}")
            stale = sorted(h for h in behind if not summary.hosts.get(h) or not summary.hosts[h].changed)
            if stale:
                problems.append(f"{stale} came back but did not catch up")
        return Outcome(operation, self.size, len(self.offline), seconds, not problems, unreachable,
                       usage.usage, problems, (settings or read_defaults()).name)

    def _check_serving(self, summary: Any) -> list[str]:
        """Every reachable node runs the staged release and is ready; none of them is left out."""
        from triptyque.targets.base import status_fleet

        problems = []
        staged = {}
        for node in self.fleet.nodes:
            if node.name in self.offline:
                continue
            result = summary.result(node.name, STAGED)
            if result is None:
                problems.append(f"{node.name} was not staged")
                continue
            staged[node.name] = result.facts["triptyque_staged"]["id"]
            current = self.fleet.ssh(node, "readlink /opt/triptyque/current", check=False).stdout
            if Path(current.strip()).name != staged[node.name]:
                problems.append(f"{node.name} runs {current.strip()!r}, not {staged[node.name]}")
        if len(set(staged.values())) > 1:
            problems.append(f"nodes staged different releases: {staged}")
        online = [e for e in self.target().gateways() if e.name not in self.offline]
        for report in asyncio.run(status_fleet(online)):
            if not report.ready:
                problems.append(f"{report.node} not ready: {report.detail}")
        return problems

    def status_run(self, settings: Settings) -> Outcome:
        """status.yml (three tasks on every node, changes nothing): the per-host cost of a task
        under ``settings``, cheap enough to compare settings side by side on a large fleet."""
        from triptyque.edge.runner import run_playbook

        with applied(settings), ControllerUsage() as usage:
            started = time.monotonic()
            summary = run_playbook("status.yml", inventory=self.inventory, extravars={},
                                   state_dir=self.workdir / "edge", progress=lambda _line: None)
            seconds = time.monotonic() - started
        problems = [] if summary.ok else summary.failures[:3]
        return Outcome("status", self.size, len(self.offline), seconds, not problems, [], usage.usage,
                       problems, settings.name)

    def switch(self, operation: str) -> Outcome:
        """Fleet kill or resume: the time until the last reachable gateway refuses (or serves)."""
        from triptyque.targets.base import status_fleet

        target = self.target()
        with ControllerUsage() as usage:
            started = time.monotonic()
            if operation == "kill":
                reports = target.kill("bench", "edge scale bench")
            else:
                reports = target.resume("bench", "edge scale bench over")
            seconds = time.monotonic() - started
        missing = sorted(r.node for r in reports if not r.reachable)
        problems = []
        if missing != sorted(self.offline):
            problems.append(f"unreachable {missing}, offline {sorted(self.offline)}")
        want = operation == "kill"
        online = [e for e in target.gateways() if e.name not in self.offline]
        for report in asyncio.run(status_fleet(online)):
            if report.ready == want:
                problems.append(f"{report.node} still {'serves' if want else 'refuses'}")
        return Outcome(operation, self.size, len(self.offline), seconds, not problems, missing,
                       usage.usage, problems)

    def node_memory_mib(self) -> float:
        return float(statistics.median(self.fleet.memory(n.name) for n in self.fleet.nodes)) / (1 << 20)


def build_bundle(spec: ServiceSpec, bundle_dir: Path, say: Say) -> None:
    """The fake-profile bundle: gateway, model, system components and the fake engine."""
    from triptyque.edge.bundle import build_for_spec

    build_for_spec(spec, bundle_dir, devices=("fake",), progress=say, cache_dir=CACHE)


# ---- the whole measurement ------------------------------------------------------------------


@dataclass
class Measurement:
    outcomes: list[Outcome] = field(default_factory=list)
    comparison: list[Outcome] = field(default_factory=list)
    node_memory_mib: dict[int, float] = field(default_factory=dict)
    host_available_mib: dict[int, float] = field(default_factory=dict)
    boot_seconds: dict[int, float] = field(default_factory=dict)


@contextlib.contextmanager
def fleet_lock(path: Path | None) -> Iterator[None]:
    """Hold ``path`` (flock) while one fleet is up, so other users of the test fleet on a
    shared machine can run between sizes rather than wait for the whole bench."""
    if path is None:
        yield
        return
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measure(sizes: Sequence[int], workdir: Path, *, compare_at: int | None, offline_at: int | None,
            repeats: int = 2, say: Say = print, lock: Path | None = None,
            checkpoint: Callable[[Measurement], None] | None = None,
            earlier: Measurement | None = None) -> Measurement:
    """Sizes in order, each on a freshly booted fleet; ``checkpoint`` gets the results so far
    after each operation and each size (a long run that is cut short keeps what it measured).
    ``earlier``: the runs of an earlier bench these sizes complete (``--extend``)."""
    from tests.support.fleet import Fleet

    spec = load_spec(ROOT / DEFAULT_SPEC, target="edge")
    bundle_dir = workdir / "bundle"
    build_bundle(spec, bundle_dir, say)
    result = earlier or Measurement()
    for size in sizes:
        with fleet_lock(lock):
            started = time.monotonic()
            with Fleet(size, cache_dir=CACHE) as fleet:
                result.boot_seconds[size] = round(time.monotonic() - started, 1)
                say(f"{size} nodes booted in {result.boot_seconds[size]:.0f} s")
                scale = ScaleFleet(fleet, spec, workdir / f"fleet-{size}", bundle_dir, say=say)
                _measure_size(scale, result, say, offline=size == offline_at,
                              compare=size == compare_at, repeats=repeats, checkpoint=checkpoint)
        if checkpoint is not None:
            checkpoint(result)
    return result


def _measure_size(scale: ScaleFleet, result: Measurement, say: Say, *, offline: bool, compare: bool,
                  repeats: int, checkpoint: Callable[[Measurement], None] | None) -> None:
    size = scale.size
    for operation in OPERATIONS:
        result.outcomes.append(_said(scale.run(operation), say))
        if checkpoint is not None:
            checkpoint(result)
    result.node_memory_mib[size] = round(scale.node_memory_mib(), 1)
    result.host_available_mib[size] = round(psutil.virtual_memory().available / (1 << 20))
    say(f"node memory (median PSS) {result.node_memory_mib[size]:.0f} MiB; host available "
        f"{result.host_available_mib[size]:.0f} MiB")
    if offline:
        # 5 % of the sites offline, then 25 % (the first ones still among them): the same
        # operations; then every site is back and catches up on the next converge.
        for share in OFFLINE_SHARES:
            scale.disconnect(max(1, math.ceil(share * size)))
            for operation in ("upgrade", "kill", "resume"):
                result.outcomes.append(_said(scale.run(operation), say))
        scale.reconnect()
        result.outcomes.append(_said(scale.converge("catch-up"), say))
    if compare:
        for _ in range(repeats):
            for settings in variants(read_defaults(), size):
                result.comparison.append(_said(scale.status_run(settings), say))


def _said(outcome: Outcome, say: Say) -> Outcome:
    label = outcome.operation
    missing = f", missing {', '.join(outcome.missing)}" if outcome.missing else ""
    verdict = "ok" if outcome.ok else "PROBLEMS: " + "; ".join(outcome.problems[:5])
    settings = f" [{outcome.settings}]" if outcome.settings and outcome.settings != "ansible.cfg" else ""
    say(f"{label}{settings} on {outcome.nodes} nodes ({outcome.unreachable} offline): "
        f"{outcome.seconds:.1f} s, controller {outcome.usage.cpu_seconds:.0f} CPU-s, "
        f"{outcome.usage.peak_rss_mib:.0f} MiB{missing}; {verdict}")
    return outcome


# ---- report ---------------------------------------------------------------------------------


def model_of(measurement: Measurement, settings: Settings) -> ScaleModel:
    points = [o.point() for o in measurement.outcomes if o.ok and o.operation in OPERATIONS]
    return ScaleModel.fit(points, {**settings.as_dict(), "serial": SERIAL, "engine": "fake"})


def document(measurement: Measurement, model: ScaleModel, command: str) -> dict[str, Any]:
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=False).stdout.strip()
    data = model.as_dict({
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "revision": revision or "unknown",
        "machine": f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / (1 << 30):.0f} GiB, "
                   f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    })
    # Beside the schema's keys, read by people: what the points cost the controller, the
    # settings compared, the nodes' memory, the runs with sites offline.
    data["controller"] = [{"operation": o.operation, "nodes": o.nodes, "unreachable": o.unreachable,
                           "cpu_seconds": o.usage.cpu_seconds, "peak_rss_mib": round(o.usage.peak_rss_mib)}
                          for o in measurement.outcomes]
    data["offline_runs"] = [{"operation": o.operation, "nodes": o.nodes, "unreachable": o.unreachable,
                             "seconds": round(o.seconds, 3), "missing": o.missing, "ok": o.ok}
                            for o in measurement.outcomes if o.unreachable or o.operation == "catch-up"]
    data["comparison"] = [{"settings": o.settings, "nodes": o.nodes, "seconds": round(o.seconds, 3),
                           "cpu_seconds": o.usage.cpu_seconds} for o in measurement.comparison]
    data["node_memory_mib"] = measurement.node_memory_mib
    return data


def measurement_from(data: dict[str, Any]) -> Measurement:
    """The measurement a ``document()`` holds, to print its report again (``--report``)."""
    seconds = {(p["operation"], p["nodes"], p["unreachable"]): p["seconds"] for p in data["points"]}
    offline = {(r["operation"], r["nodes"], r["unreachable"]): r for r in data.get("offline_runs", [])}
    result = Measurement(node_memory_mib={int(k): v for k, v in data.get("node_memory_mib", {}).items()})
    for run in data.get("controller", []):
        key = (run["operation"], run["nodes"], run["unreachable"])
        usage = Usage(run["cpu_seconds"], run["peak_rss_mib"])
        if key in offline:
            found = offline[key]
            result.outcomes.append(Outcome(key[0], key[1], key[2], found["seconds"], found["ok"],
                                           found["missing"], usage))
        elif key in seconds:
            result.outcomes.append(Outcome(key[0], key[1], key[2], seconds[key], True, [], usage))
    for run in data.get("comparison", []):
        result.comparison.append(Outcome("status", run["nodes"], 0, run["seconds"], True, [],
                                         Usage(run["cpu_seconds"], 0.0), settings=run["settings"]))
    return result


def render(measurement: Measurement, model: ScaleModel) -> str:
    sizes = sorted({o.nodes for o in measurement.outcomes})
    lines = ["edge at scale: fake-engine nodes (real gateway, units, roles), seconds per operation"]
    head = f"{'operation':<12}" + "".join(f"{n:>9}" for n in sizes)
    lines += [head, "-" * len(head)]
    for operation in OPERATIONS:
        cells = []
        for n in sizes:
            found = [o.seconds for o in measurement.outcomes
                     if o.operation == operation and o.nodes == n and not o.unreachable]
            cells.append(f"{statistics.median(found):9.1f}" if found else f"{'-':>9}")
        lines.append(f"{operation:<12}" + "".join(cells))
    lines.append("controller CPU-s / peak RSS MiB of the Ansible processes")
    for operation in OPERATIONS:
        usage = []
        for n in sizes:
            runs = [o for o in measurement.outcomes
                    if o.operation == operation and o.nodes == n and not o.unreachable]
            usage.append(f"{runs[0].usage.cpu_seconds:>4.0f}/{runs[0].usage.peak_rss_mib:<4.0f}"
                         if runs else f"{'-':>9}")
        lines.append(f"{operation:<12}" + "".join(f"{c:>9}" for c in usage))
    lines.append(f"{'node MiB':<12}" + "".join(f"{measurement.node_memory_mib.get(n, float('nan')):9.0f}"
                                               for n in sizes))
    offline = [o for o in measurement.outcomes if o.unreachable or o.operation == "catch-up"]
    if offline:
        lines.append("with sites offline (5 % and 25 % of the fleet, then back)")
        for o in offline:
            verdict = "ok" if o.ok else "PROBLEMS: " + "; ".join(o.problems[:3])
            lines.append(f"  {o.operation:<11} {o.nodes} nodes, {o.unreachable} offline: {o.seconds:7.1f} s, "
                         f"missing reported: {', '.join(o.missing) or '-'}; {verdict}")
    if measurement.comparison:
        by_name: dict[str, list[float]] = {}
        for o in measurement.comparison:
            by_name.setdefault(o.settings, []).append(o.seconds)
        reference = statistics.median(by_name["as configured"])
        lines.append(f"Ansible settings, status.yml on {measurement.comparison[0].nodes} nodes "
                     "(median of the runs, one setting changed at a time, interleaved)")
        for name, values in sorted(by_name.items(), key=lambda kv: statistics.median(kv[1])):
            median = statistics.median(values)
            lines.append(f"  {name:<22} {median:7.1f} s  ({median / reference:5.2f} x as configured; "
                         f"runs {', '.join(f'{v:.1f}' for v in values)})")
    lines.append("fit: fixed + per_batch * ceil(N / batch) + per_node * N / parallelism")
    for name, fit in model.fits.items():
        lines.append(f"  {name:<11} fixed {fit.fixed:7.2f} s, per batch {fit.per_batch:6.2f} s "
                     f"(batch {fit.batch or 'all'}), per node {fit.per_node:6.3f} s / {fit.parallelism}; "
                     f"max error on the measured points {fit.max_relative_error:.1%}")
    lines.append("predicted (modelled, +- the fit's largest error)")
    for name in model.fits:
        predicted = []
        for n in PREDICT:
            p = model.predict(name, n)
            predicted.append(f"{n} sites {_duration(p.seconds)} ({_duration(p.low)}-{_duration(p.high)})")
        lines.append(f"  {name:<11} " + "; ".join(predicted))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def rows(measurement: Measurement, model: ScaleModel) -> list[Row]:
    out = [Row("edge at scale (fake-engine nodes)", f"{o.operation}, {o.nodes} nodes, {o.unreachable} offline",
               float("nan"), o.seconds, "s", None, "finishes, reports the offline nodes, others correct", o.ok)
           for o in measurement.outcomes if o.unreachable or o.operation == "catch-up"]
    for operation, fit in model.fits.items():
        out.append(Row("edge at scale: fit", f"{operation}: largest relative error on the measured points",
                       float("nan"), fit.max_relative_error * 100, "%", None, "< 25 %",
                       fit.max_relative_error < 0.25))
        for n in PREDICT:
            p = model.predict(operation, n)
            out.append(Row("edge at scale: predicted", f"{operation}, {n} sites", float("nan"),
                           round(p.seconds, 1), "s", None, f"modelled, +-{p.relative_error:.0%}", None))
    return out


def bench(sizes: Sequence[int], workdir: Path, say: Say = print, *, write: Path | None = OUTPUT,
          compare_at: int | None = 16, offline_at: int | None = 8, lock: Path | None = None,
          repeats: int = 2, argv: Sequence[str] = (), extend: Path | None = None) -> tuple[list[Row], str]:
    if os.geteuid() != 0:
        return [Row("edge at scale", "not measured: the test fleet needs root", float("nan"), float("nan"),
                    "", None, "", None)], ""
    command = shlex.join(["python", "-m", *argv])
    earlier = None
    if extend is not None:
        import json

        # One document for both runs: the earlier run's points, then these sizes; its command and
        # date stay in front of this one's.
        data = json.loads(extend.read_text())
        known = {o["nodes"] for o in data.get("controller", [])}
        if known & set(sizes):
            raise SystemExit(f"{extend} already holds {sorted(known & set(sizes))} nodes: extend it with other sizes")
        earlier = measurement_from(data)
        command = f"{data['measured']['command']} ({data['measured']['date']}); then {command}"

    def save(measurement: Measurement) -> None:
        if write is not None:
            import json

            model = model_of(measurement, read_defaults())
            write.write_text(json.dumps(document(measurement, model, command), indent=2) + "\n")
            say(f"wrote {write.name} ({len(measurement.outcomes)} runs so far)")

    measurement = measure(sizes, workdir, compare_at=compare_at, offline_at=offline_at, say=say,
                          lock=lock, repeats=repeats, checkpoint=save, earlier=earlier)
    model = model_of(measurement, read_defaults())
    return rows(measurement, model), render(measurement, model)


def main(argv: list[str] | None = None) -> int:
    """python -m bench.edge_scale [--sizes 2 4 8] [--no-write]: this part alone."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.edge_scale")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--compare-at", type=int, default=16, help="fleet size of the settings comparison")
    parser.add_argument("--offline-at", type=int, default=8, help="fleet size of the runs with sites offline")
    parser.add_argument("--fleet-lock", type=Path, default=None,
                        help="a file to flock while each fleet is up (a machine shared with other fleet users)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the settings comparison")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--report", type=Path, help="print the report of an earlier run's JSON and stop")
    parser.add_argument("--extend", type=Path,
                        help="add these sizes to an earlier run's JSON (a run cut short), written to the usual place")
    args = parser.parse_args(argv)
    if args.report:
        import json

        data = json.loads(args.report.read_text())
        print(f"# {data['measured']['date']}, {data['measured']['machine']}, revision "
              f"{data['measured']['revision']}; {data['measured']['command']}")
        print(render(measurement_from(data), ScaleModel.load(args.report)))
        return 0
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    with tempfile.TemporaryDirectory(prefix="triptyque-scale-") as work:
        _, text = bench(args.sizes, Path(work), say, write=None if args.no_write else OUTPUT,
                        compare_at=args.compare_at, offline_at=args.offline_at, lock=args.fleet_lock,
                        repeats=args.repeats, argv=["bench.edge_scale", *(argv if argv is not None else sys.argv[1:])],
                        extend=args.extend)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
