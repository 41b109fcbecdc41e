"""Drills: scripted operations against a deployed target, each timed phase by phase.

A drill needs only the Target protocol (up, down, status, kill, resume) plus a
``DrillHooks`` object for what the protocol does not say: how to reach the gateways
as a client, which log lines mark a phase, how to crash an engine or reboot a node.
A drill whose hook is missing is not offered for that target.

Every run becomes one ledger entry: its phases (seconds since the drill started and
since the previous phase), metrics (time to refuse, to restore, outage seen by a
client), the steps taken (``human`` when an operator has to type or decide something,
``automation`` when the drill or the system did it) with their commands, and the
outcome. Human reaction time is never included: a drill issues the next command as
soon as the previous state is reached, so add your own response time (see the
report's recovery section).

Deploy phases, in order (what each means on a target is the hook's docstring):

    infra_ready       machines reachable, tools present, ports free
    engine_installed  the engine software is on the node and its process runs
    weights_loaded    the engine reports the model loaded
    ready             Target.up returned: every health check passed
    first_token       a streamed request through the gateway got its first token
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from triptyque.burden.errors import BurdenError
from triptyque.burden.ledger import Ledger
from triptyque.burden.probe import Prober, first_token, wait_not_ready, wait_refused, wait_serving
from triptyque.errors import TriptyqueError
from triptyque.spec import ServiceSpec
from triptyque.targets.base import Target
from triptyque.targets.hooks import DrillHooks
from triptyque.types import Progress

DEPLOY_PHASES = ("infra_ready", "engine_installed", "weights_loaded", "ready", "first_token")
Actor = Literal["human", "automation"]
HUMAN_REACTION_NOTE = ("Human reaction time is not included: the drill ran each operator command as soon as "
                       "the previous state was reached. Add your on-call response time.")


@dataclass
class Step:
    actor: Actor
    action: str
    command: str
    seconds: float = 0.0
    outcome: str = "ok"
    detail: str = ""


class DrillContext:
    """The clock, phases, steps and metrics of one drill run."""

    def __init__(self, target: Target, hooks: DrillHooks, operator: str, progress: Progress) -> None:
        self.target, self.hooks, self.operator = target, hooks, operator
        self._progress = progress
        self.started = time.monotonic()
        self.phases: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, float] = {}
        self.steps: list[Step] = []
        self.timeline: list[tuple[float, str]] = []
        self.notes: list[str] = []
        self.nodes: dict[str, dict[str, float]] = {}
        self._phase_patterns: list[tuple[re.Pattern[str], str]] = []

    def now(self) -> float:
        return round(time.monotonic() - self.started, 4)

    def watch_progress(self) -> None:
        """From now on, progress messages matching the hooks' patterns mark deploy phases."""
        self._phase_patterns = [(re.compile(p), phase) for p, phase in self.hooks.progress_phases().items()]

    def restart_clock(self) -> None:
        """Preparation is over: the drill's own time starts now."""
        self.started = time.monotonic()
        self.timeline.clear()

    def say(self, message: str) -> None:
        self.timeline.append((self.now(), message))
        for pattern, phase in self._phase_patterns:
            if pattern.search(message):
                self.mark(phase, f"progress: {message}")
        self._progress(message)

    def mark(self, phase: str, source: str, at: float | None = None) -> None:
        if phase not in self.phases:
            self.phases[phase] = {"at": self.now() if at is None else at, "source": source}

    def metric(self, name: str, value: float) -> None:
        self.metrics[name] = round(float(value), 4)

    def per_node(self, metric: str, values: dict[str, float], since: float = 0.0) -> float:
        """Record a per-node time (from ``since``) and return the slowest node's."""
        for node, at in values.items():
            self.nodes.setdefault(node, {})[metric] = round(at - since, 4)
        slowest = max(at - since for at in values.values())
        self.metric(metric, slowest)
        return slowest

    @contextlib.contextmanager
    def step(self, actor: Actor, action: str, command: str) -> Iterator[Step]:
        step = Step(actor, action, command)
        self.steps.append(step)
        self.say(f"{actor}: {action} ({command})")
        started = time.monotonic()
        try:
            yield step
        except BaseException as exc:
            step.outcome, step.detail = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise
        finally:
            step.seconds = round(time.monotonic() - started, 4)

    def attempt(self, actor: Actor, action: str, command: str, run: Callable[[], object]) -> bool:
        """Run a step that may be refused (a TargetError); record the refusal and go on."""
        try:
            with self.step(actor, action, command):
                run()
        except TriptyqueError as exc:
            self.steps[-1].outcome = "refused"
            self.say(f"refused: {str(exc).splitlines()[0]}")
            return False
        return True

    def ordered_phases(self) -> dict[str, dict[str, Any]]:
        ordered = dict(sorted(self.phases.items(), key=lambda item: item[1]["at"]))
        previous = 0.0
        for phase in ordered.values():
            phase["seconds"] = round(phase["at"] - previous, 4)
            previous = phase["at"]
        return ordered


@dataclass
class DrillResult:
    drill: str
    target: str
    outcome: Literal["ok", "failed"]
    seconds: float
    phases: dict[str, dict[str, Any]]
    metrics: dict[str, float]
    steps: list[Step]
    nodes: dict[str, dict[str, float]]
    timeline: list[tuple[float, str]]
    notes: list[str]
    error: str | None = None
    entry_id: int | None = None

    @property
    def human_steps(self) -> int:
        return sum(1 for s in self.steps if s.actor == "human")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Drill:
    name: str
    summary: str
    run: Callable[[DrillContext], None]
    needs: tuple[str, ...] = ()

    def available(self, hooks: DrillHooks) -> bool:
        return all(getattr(hooks, flag) for flag in self.needs)


# ---- the drills -----------------------------------------------------------------------------


def _ensure_serving(ctx: DrillContext) -> None:
    """Preparation (before the clock starts): the target must be up and its switch released."""
    if not ctx.hooks.deployed():
        with ctx.step("automation", "deploy first (preparation, not timed)", f"triptyque up {ctx.hooks.cli_name}"):
            ctx.target.up(ctx.say)
    client = ctx.hooks.access()
    with httpx.Client(timeout=10.0) as http:
        engaged = any(http.get(f"{g.url}/readyz").json().get("kill_switch_engaged") for g in client.gateways)
    if engaged:
        with ctx.step("automation", "release a kill switch left engaged (preparation, not timed)",
                      f"triptyque resume -t {ctx.hooks.cli_name}"):
            ctx.target.resume(ctx.operator, "drill preparation")
    wait_serving(client, ctx.now, timeout=600)
    ctx.restart_clock()
    ctx.steps.clear()


def _watch(ctx: DrillContext, probes: dict[str, Callable[[], bool]]) -> Callable[[], None]:
    """Poll the phase probes in a thread until the returned stop function is called."""
    stop = threading.Event()

    def run() -> None:
        pending = dict(probes)
        while pending and not stop.is_set():
            for phase, seen in list(pending.items()):
                with contextlib.suppress(OSError):
                    if seen():
                        ctx.mark(phase, "observed in the engine's log")
                        del pending[phase]
            stop.wait(0.1)

    thread = threading.Thread(target=run, name="drill-phases", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=5)

    return halt


PULL_APPLIED = "every pull node reported the release applied and ready"


def _pulled(ctx: DrillContext, hooks: DrillHooks, issued: float,
            phase: str | None = "pull_applied") -> float | None:
    """Nodes that converge themselves (edge pull nodes) apply what ``up`` published after it
    returned: wait for every one of them, per node, and mark ``phase`` when the last one did;
    return that drill time, or None when ``up`` applied everything itself."""
    applied = hooks.applied(ctx.now, issued)
    if not applied:
        return None
    ctx.per_node("time_to_apply_seconds", applied)
    last = max(applied.values())
    if phase:
        ctx.mark(phase, PULL_APPLIED, at=last)
    return last


def _first_token(ctx: DrillContext) -> None:
    seen = first_token(ctx.hooks.access(), ctx.now)
    ctx.per_node("first_token_seconds", seen)
    ctx.mark("first_token", "a streamed chat request through every gateway got a token", at=max(seen.values()))


def drill_deploy(ctx: DrillContext) -> None:
    cli = ctx.hooks.cli_name
    if ctx.hooks.deployed():
        with ctx.step("automation", "tear down the running deployment (preparation, not timed)",
                      f"triptyque down {cli}"):
            ctx.target.down(ctx.say)
    ctx.restart_clock()
    ctx.steps.clear()
    ctx.watch_progress()
    halt = _watch(ctx, ctx.hooks.deploy_probes())
    issued = time.time()
    try:
        with ctx.step("human", "deploy", f"triptyque up {cli}"):
            ctx.target.up(ctx.say)
    finally:
        halt()
    returned = ctx.now()
    applied = _pulled(ctx, ctx.hooks, issued, phase=None)
    if applied is None:
        ctx.mark("ready", "Target.up returned: every health check passed", at=returned)
    else:
        ctx.mark("published", "Target.up returned: published for the pull nodes, pushed to the others", at=returned)
        ctx.mark("ready", PULL_APPLIED, at=applied)
    _first_token(ctx)
    ctx.metric("time_to_serve_seconds", ctx.phases["first_token"]["at"])
    missing = [p for p in DEPLOY_PHASES if p not in ctx.phases]
    if missing:
        ctx.notes.append(f"phases not observed on this target: {', '.join(missing)}")


def drill_redeploy(ctx: DrillContext) -> None:
    _ensure_serving(ctx)
    cli = ctx.hooks.cli_name
    client = ctx.hooks.access()
    with Prober(client, ctx.now) as prober:
        issued = time.time()
        idempotent = ctx.attempt("human", "re-deploy the same spec", f"triptyque up {cli}",
                                 lambda: ctx.target.up(ctx.say))
        if not idempotent:
            ctx.notes.append(f"`triptyque up {cli}` refuses a running deployment: re-deploying means a "
                             "full stop and start, with the outage measured below.")
            with ctx.step("human", "stop the deployment", f"triptyque down {cli}"):
                ctx.target.down(ctx.say)
            ctx.mark("stopped", "Target.down returned")
            with ctx.step("human", "deploy again", f"triptyque up {cli}"):
                ctx.target.up(ctx.say)
        ctx.mark("ready", "Target.up returned")
        _pulled(ctx, ctx.hooks, issued)
        ctx.per_node("time_to_serve_seconds", wait_serving(client, ctx.now))
        ctx.mark("serving", "every gateway answered 200 again")
    ctx.metric("idempotent", 1.0 if idempotent else 0.0)
    ctx.metric("outage_seconds", prober.longest_outage())
    ctx.metric("failed_requests", prober.failed)


def _kill(ctx: DrillContext, hard: bool) -> None:
    _ensure_serving(ctx)
    cli = ctx.hooks.cli_name
    client = ctx.hooks.access()
    flag = " --hard" if hard else ""
    issued = ctx.now()
    with ctx.step("human", "engage the kill switch" + (" and stop the engine" if hard else ""),
                  f'triptyque kill -t {cli} -r "drill"{flag}'):
        reports = ctx.target.kill(ctx.operator, f"drill: kill{flag}", hard=hard)
    unconfirmed = [r.node for r in reports if not r.engaged]
    if unconfirmed:
        raise BurdenError([f"kill not confirmed by {', '.join(unconfirmed)}"])
    ctx.mark("kill_acknowledged", "every gateway confirmed the kill")
    ctx.metric("kill_ack_seconds", max(r.seconds for r in reports))
    ctx.per_node("time_to_refuse_all_seconds", wait_refused(client, ctx.now), since=issued)
    ctx.mark("all_refuse", "every gateway answered 503 to a real request")
    if hard:
        # engine_stopped(_seconds) and engine_started(_seconds): per node, from systemd on edge
        ctx.metric("engine_stop_seconds", max(float(r.extra.get("engine_stopped_seconds") or 0.0) for r in reports))
        ctx.mark("engine_stopped", "the kill call returned with the engine stopped")
    resumed_at = ctx.now()
    with ctx.step("human", "release the kill switch" + (" (restarts the engine)" if hard else ""),
                  f'triptyque resume -t {cli} -r "drill over"'):
        resumed = ctx.target.resume(ctx.operator, "drill over")
    if hard:
        not_started = [r.node for r in resumed if r.extra.get("engine_started") is False]
        if not_started:
            raise BurdenError([f"the engine did not start again on {', '.join(not_started)}"])
        ctx.metric("engine_start_seconds",
                   max((float(r.extra.get("engine_started_seconds") or 0.0) for r in resumed), default=0.0))
    ctx.mark("resumed", "Target.resume returned")
    ctx.per_node("time_to_serve_again_seconds", wait_serving(client, ctx.now), since=resumed_at)
    ctx.mark("all_serve", "every gateway answered 200 again")


def drill_kill_soft(ctx: DrillContext) -> None:
    _kill(ctx, hard=False)


def drill_kill_hard(ctx: DrillContext) -> None:
    _kill(ctx, hard=True)


def _automated(ctx: DrillContext, action: str, run: Callable[[], str]) -> None:
    """A step the drill itself takes; ``run`` does it and returns the command it ran."""
    started = ctx.now()
    command = run()
    ctx.steps.append(Step("automation", action, command, round(ctx.now() - started, 4)))
    ctx.say(f"automation: {action} ({command})")


def drill_engine_crash(ctx: DrillContext) -> None:
    _ensure_serving(ctx)
    client = ctx.hooks.access()
    with Prober(client, ctx.now) as prober:
        crashed = ctx.now()
        _automated(ctx, "crash the engine (SIGKILL, as the OOM killer would)", ctx.hooks.crash_engine)
        ctx.mark("crashed", "the engine was killed")
        ctx.per_node("detection_seconds", wait_not_ready(client, ctx.now), since=crashed)
        ctx.mark("detected", "every gateway's /readyz reports the engine not ready")
        if ctx.hooks.self_heals:
            ctx.say("waiting for the supervisor to restart the engine (no human step)")
        else:
            ctx.notes.append(HUMAN_REACTION_NOTE)
            for action, command, run in ctx.hooks.recovery(ctx.operator, ctx.say):
                if ctx.attempt("human", action, command, run):
                    break
            else:
                raise BurdenError(["no recovery step worked; see the steps"])
        ctx.per_node("time_to_restore_seconds", wait_serving(client, ctx.now), since=crashed)
        ctx.mark("restored", "every gateway answered 200 again")
    ctx.metric("outage_seconds", prober.longest_outage())
    ctx.metric("failed_requests", prober.failed)


def drill_node_reboot(ctx: DrillContext) -> None:
    _ensure_serving(ctx)
    client = ctx.hooks.access()
    node = ctx.hooks.nodes()[0]
    with Prober(client, ctx.now) as prober:
        rebooted = ctx.now()
        _automated(ctx, f"reboot {node}", lambda: ctx.hooks.reboot_node(node))
        ctx.mark("rebooting", f"{node} was told to reboot")
        ctx.per_node("time_to_serve_again_seconds", wait_serving(client, ctx.now), since=rebooted)
        ctx.mark("restored", "every gateway answered 200 again")
    ctx.metric("outage_seconds", prober.longest_outage())
    ctx.metric("failed_requests", prober.failed)


def _change_spec(ctx: DrillContext, spec: ServiceSpec, action: str, change: str) -> None:
    target, hooks = ctx.hooks.with_spec(spec)
    client = hooks.access()
    with Prober(client, ctx.now) as prober:
        issued = time.time()
        with ctx.step("human", action, f"triptyque up {hooks.cli_name}  # {change}"):
            target.up(ctx.say)
        ctx.mark("applied", "Target.up returned")
        # On pull nodes the old release serves until each node applies the new one: time that.
        _pulled(ctx, hooks, issued)
        ctx.per_node("time_to_serve_seconds", wait_serving(client, ctx.now))
        ctx.mark("serving", "every gateway answered 200")
    ctx.metric("outage_seconds", prober.longest_outage())
    ctx.metric("failed_requests", prober.failed)
    ctx.notes.append(change)


def drill_upgrade(ctx: DrillContext) -> None:
    _ensure_serving(ctx)
    spec, change = ctx.hooks.upgraded(_spec_of(ctx.target))
    _change_spec(ctx, spec, "upgrade: deploy the new spec", change)
    ctx.hooks.deployed_spec = spec


def drill_rollback(ctx: DrillContext) -> None:
    """Roll back from the upgrade to the spec the target started from (the upgrade first if not on it)."""
    original = _spec_of(ctx.target)
    upgraded, change = ctx.hooks.upgraded(original)
    if ctx.hooks.deployed_spec != upgraded:
        target, _hooks = ctx.hooks.with_spec(upgraded)
        with ctx.step("automation", "deploy the upgrade first (preparation, not timed)",
                      f"triptyque up {ctx.hooks.cli_name}"):
            target.up(ctx.say)
        ctx.restart_clock()
        ctx.steps.clear()
    _change_spec(ctx, original, "roll back: deploy the previous spec (git revert)", f"undo: {change}")
    ctx.hooks.deployed_spec = original


def _spec_of(target: Target) -> ServiceSpec:
    spec = getattr(target, "spec", None)
    if not isinstance(spec, ServiceSpec):
        raise BurdenError([f"{target.name}: the target does not expose its spec; cannot derive an upgrade"])
    return spec


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("deploy", "fresh deploy, timed phase by phase up to the first token", drill_deploy),
    Drill("redeploy", "deploy the same spec again; is it idempotent, what outage?", drill_redeploy),
    Drill("upgrade", "deploy a changed spec (engine or model) over the running one", drill_upgrade,
          ("can_change_spec",)),
    Drill("rollback", "go back to the previous spec after an upgrade", drill_rollback, ("can_change_spec",)),
    Drill("kill-soft", "kill switch: time until every gateway refuses, then resume", drill_kill_soft),
    Drill("kill-hard", "kill switch and engine stop, then resume with an engine restart", drill_kill_hard),
    Drill("engine-crash", "crash the engine; time to detect and to restore service", drill_engine_crash,
          ("can_crash_engine",)),
    Drill("node-reboot", "reboot one node; time until it serves again", drill_node_reboot, ("can_reboot_node",)),
)}


def available(hooks: DrillHooks) -> list[str]:
    return [name for name, drill in DRILLS.items() if drill.available(hooks)]


def run_drill(
    name: str, target: Target, hooks: DrillHooks, *, ledger: Ledger, operator: str,
    progress: Progress = lambda _m: None, spec: ServiceSpec | None = None,
) -> DrillResult:
    """Run one drill, record it in the ledger whatever its outcome, and return it."""
    if name not in DRILLS:
        raise BurdenError([f"unknown drill {name!r}; use one of {', '.join(DRILLS)} or all"])
    drill = DRILLS[name]
    if not drill.available(hooks):
        raise BurdenError([f"drill {name} is not available on {target.name}: it needs {', '.join(drill.needs)}; "
                           f"available here: {', '.join(available(hooks))}"])
    ctx = DrillContext(target, hooks, operator, progress)
    outcome: Literal["ok", "failed"] = "ok"
    error = None
    try:
        drill.run(ctx)
    except (TriptyqueError, httpx.HTTPError, NotImplementedError) as exc:
        outcome, error = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ctx.say(f"drill failed: {error}")
    result = DrillResult(name, target.name, outcome, ctx.now(), ctx.ordered_phases(), ctx.metrics, ctx.steps,
                         ctx.nodes, ctx.timeline, ctx.notes, error)
    result.entry_id = ledger.record(
        "drill", name, target=target.name, outcome=outcome, seconds=result.seconds,
        spec=spec or getattr(target, "spec", None), phases=result.phases, metrics=result.metrics,
        steps=[asdict(s) for s in result.steps],
        details={"summary": drill.summary, "nodes": result.nodes, "timeline": result.timeline,
                 "notes": result.notes, "error": error, "human_steps": result.human_steps,
                 "commands": [s.command for s in result.steps]},
    )
    return result
