"""The `triptyque` command: thin commands over the modules that do the work."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from triptyque.errors import TargetError, TriptyqueError
from triptyque.kinds import Capability, listing, names_with
from triptyque.spec import DEFAULT_SPEC, load_spec, validate_file
from triptyque.targets.base import Target
from triptyque.targets.registry import make_planned, make_target
from triptyque.types import NodeReport, Progress

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Deploy one vLLM service to local, edge, on-prem and cloud targets, "
                       "and measure what each costs to run.")
audit_app = typer.Typer(no_args_is_help=True, help="Check the kill-switch audit log.")
keys_app = typer.Typer(no_args_is_help=True, help="Create API and admin keys.")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
evidence_app = typer.Typer(no_args_is_help=True, help="Signed evidence bundles for auditors.")
app.add_typer(evidence_app, name="evidence")

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

SpecOption = Annotated[Path, typer.Option("--spec", envvar="TRIPTYQUE_SPEC",
                                          help="The service spec (YAML).")]
StateOption = Annotated[Path, typer.Option("--state-dir", envvar="TRIPTYQUE_STATE_DIR",
                                           help="Where deployments keep their state.")]
TargetOption = Annotated[str, typer.Option("--target", "-t", help=f"{listing()}.")]
InventoryOption = Annotated[Path | None, typer.Option("--inventory", "-i", envvar="TRIPTYQUE_INVENTORY",
                                                      help="Ansible inventory (edge target).")]
OperatorOption = Annotated[str, typer.Option(
    "--operator", envvar="TRIPTYQUE_OPERATOR",
    help="A note on who takes the decision. local and edge go through the gateways' admin API: the "
         "operator recorded in the audit log is the admin key's name, this text only its 'note'. "
         "onprem and cloud write the ConfigMap with your kubeconfig: this name is recorded as typed, "
         "its source saying it came from a kubeconfig holder.")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")]
DEFAULT_STATE = Path(".triptyque")


def _default_operator() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return "operator"


def fail(error: TriptyqueError) -> typer.Exit:
    for line in str(error).splitlines():
        errors.print("[red]error:[/]", Text(line), highlight=False, markup=True)
    return typer.Exit(1)


@contextlib.contextmanager
def spinner() -> Iterator[Progress]:
    """A Rich status line; each message is also kept in the scrollback."""
    started = time.monotonic()
    with console.status("working...") as status:
        last = [""]

        def update(message: str) -> None:
            status.update(f"{message}  [dim]{time.monotonic() - started:.0f} s[/]")
            if not message.startswith("waiting") and message != last[0]:
                console.print(f"  [dim]-[/] {message}")
            last[0] = message

        yield update


def _target(name: str, spec_path: Path, state_dir: Path, inventory: Path | None) -> Target:
    return make_target(name, load_spec(spec_path, target=name), state_root=state_dir, inventory=inventory)


def _reports(reports: list[NodeReport], title: str) -> bool:
    table = Table(title=title)
    for column in ("node", "reachable", "stopped", "ready", "time", "detail"):
        table.add_column(column)
    ok = True
    for r in reports:
        ok &= r.reachable
        # Node names and details carry text from gateways (an operator's reason): printed as
        # text, never read as Rich markup.
        table.add_row(Text(r.node), "yes" if r.reachable else "[red bold]NO[/]",
                      "-" if r.engaged is None else ("yes" if r.engaged else "no"),
                      "-" if r.ready is None else ("yes" if r.ready else "no"),
                      f"{r.seconds * 1000:.0f} ms", Text(r.detail + (f" {r.extra}" if r.extra else "")))
    console.print(table)
    return ok


@app.command()
def validate(spec: SpecOption = DEFAULT_SPEC) -> None:
    """Check the service spec and every target's overrides; one line per problem."""
    try:
        resolved = validate_file(spec)
    except TriptyqueError as exc:
        raise fail(exc) from None
    targets = ", ".join(name for name in resolved if name != "base")
    console.print(f"[green]ok[/] {spec}: base spec and targets {targets} are valid "
                  f"(spec hash {resolved['base'].spec_hash()})")


@app.command()
def up(target: Annotated[str, typer.Argument(help=listing())] = "local",
       spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE,
       inventory: InventoryOption = None) -> None:
    """Deploy the service to a target and wait until it serves."""
    try:
        deployment = _target(target, spec, state_dir, inventory)
        with _recorded(state_dir, "deploy", deployment), spinner() as progress:
            endpoints = deployment.up(progress)
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[bold green]{target} is up[/]")
    for endpoint in endpoints:
        console.print(f"  {endpoint.name:<30} {endpoint.url}")


@app.command()
def down(target: Annotated[str, typer.Argument(help=listing())] = "local",
         spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE,
         inventory: InventoryOption = None) -> None:
    """Stop the service on a target (the kill-switch state and audit log are kept)."""
    try:
        deployment = _target(target, spec, state_dir, inventory)
        with _recorded(state_dir, "down", deployment), spinner() as progress:
            deployment.down(progress)
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[bold]{target} is down[/]")


@app.command()
def status(target: TargetOption = "local", spec: SpecOption = DEFAULT_SPEC,
           state_dir: StateOption = DEFAULT_STATE, inventory: InventoryOption = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Readiness and kill-switch state of every gateway of a target."""
    try:
        reports = _target(target, spec, state_dir, inventory).status()
    except TriptyqueError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
        ok = all(r.reachable for r in reports)
    else:
        ok = _reports(reports, f"{target} status")
    raise typer.Exit(0 if ok else 1)


@app.command()
def kill(reason: ReasonOption, target: TargetOption = "local", spec: SpecOption = DEFAULT_SPEC,
         state_dir: StateOption = DEFAULT_STATE, inventory: InventoryOption = None,
         operator: OperatorOption = "",
         hard: Annotated[bool, typer.Option("--hard", help="Also stop the engine to free the GPU.")] = False,
         ) -> None:
    """Stop serving at once on every gateway of the target; exits 1 if any is unreachable."""
    try:
        deployment, who = _target(target, spec, state_dir, inventory), operator or _default_operator()
        with _recorded(state_dir, "kill", deployment, operator=who, reason=reason, hard=hard) as record:
            reports = record["reports"] = deployment.kill(who, reason, hard=hard)
    except TriptyqueError as exc:
        raise fail(exc) from None
    ok = _reports(reports, f"kill switch engaged on {target}") and all(r.engaged for r in reports)
    if not ok:
        errors.print("[red bold]error:[/] not every gateway confirmed the stop; see the table above")
    raise typer.Exit(0 if ok else 1)


@app.command()
def resume(reason: ReasonOption, target: TargetOption = "local", spec: SpecOption = DEFAULT_SPEC,
           state_dir: StateOption = DEFAULT_STATE, inventory: InventoryOption = None,
           operator: OperatorOption = "") -> None:
    """Release the kill switch on every gateway of the target.

    Exits 0 once released, 1 if a gateway did not confirm, 3 when the spec's two-person rule
    holds it: "approval recorded, waiting for a second admin" (another admin key must resume
    within kill_switch.approval_window_seconds)."""
    try:
        deployment, who = _target(target, spec, state_dir, inventory), operator or _default_operator()
        with _recorded(state_dir, "resume", deployment, operator=who, reason=reason) as record, \
                spinner() as progress:
            reports = record["reports"] = deployment.resume(who, reason, progress)
    except TriptyqueError as exc:
        raise fail(exc) from None
    waiting = [r for r in reports if r.detail.startswith("HTTP 202")]  # two-person rule: approval only
    title = f"resume approval recorded on {target}" if waiting else f"kill switch released on {target}"
    ok = _reports(reports, title) and not any(r.engaged for r in reports)
    if waiting and ok:
        console.print("[yellow bold]approval recorded, waiting for a second admin[/]: still stopped until "
                      "another admin key resumes within the approval window (two-person rule)")
        raise typer.Exit(APPROVAL_PENDING)
    if not ok:
        errors.print("[red bold]error:[/] not every gateway confirmed the resume; see the table above")
    raise typer.Exit(0 if ok else 1)


APPROVAL_PENDING = 3  # `triptyque resume` exit code: one approval recorded, a second admin is needed


def _verify_cluster_audit(target: str, spec: Path, state_dir: Path, key: Path | None) -> None:
    from triptyque.gateway.settings import ClusterState
    from triptyque.gateway.state_k8s import verify_cluster_chain
    from triptyque.keys import audit_key
    from triptyque.targets.kubernetes import KubernetesTarget

    try:
        cluster = _target(target, spec, state_dir, None)
        if not isinstance(cluster, KubernetesTarget):
            raise TargetError(f"--target {target}: only onprem and cloud keep the chain in the cluster; "
                              "pass --log for a file")
        where = ClusterState(namespace=cluster.names.namespace, configmap=cluster.names.killswitch)
        verified = verify_cluster_chain(where, cluster.cluster().configuration, audit_key(key) if key else None)
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[green]ok[/] {where.namespace}/{where.configmap} on {target}: {verified.entries} entries, "
                  f"archives included, chain intact, state agrees, head {verified.head[:16]} seq {verified.seq}"
                  + (", signed" if key else ""), highlight=False)


@audit_app.command("verify")
def audit_verify(
    log: Annotated[Path | None, typer.Option("--log", help="An audit log file.")] = None,
    state_dir: StateOption = DEFAULT_STATE,
    key: Annotated[Path | None, typer.Option("--key", help="The audit key file (audit_key_path), "
                                                          "to check the signatures.")] = None,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", help="onprem or cloud: the chain in the cluster, its archives included.")] = None,
    spec: SpecOption = DEFAULT_SPEC,
) -> None:
    """Walk the hash chain of a kill-switch audit log and check the stored state against it."""
    from rich.markup import escape

    if target is not None:
        _verify_cluster_audit(target, spec, state_dir, key)
        return
    from triptyque.gateway.audit import AuditLog, verify_with_state
    from triptyque.gateway.settings import AUDIT_FILE, STATE_FILE
    from triptyque.gateway.state import FileStateStore
    from triptyque.keys import audit_key

    folder = (log.parent if log else state_dir / "local" / "state")
    path = log or folder / AUDIT_FILE
    local_key = state_dir / "local" / "audit.key"  # where the local target keeps it
    key = key or (local_key if log is None and local_key.is_file() else None)
    try:
        secret = audit_key(key) if key else None
        stored = FileStateStore(folder / STATE_FILE).load()
        verified = verify_with_state(AuditLog(path, secret), stored, secret)
    except TriptyqueError as exc:
        raise fail(exc) from None
    for seq in verified.recoveries:
        console.print(f"[yellow]note[/] entry {seq} resumed from a fail-closed state; its "
                      "'fail_closed' field says what was wrong then", highlight=False)
    state = "state agrees" if stored is not None else "no state"
    console.print(f"[green]ok[/] {escape(str(path))}: {verified.entries} entries, chain intact, {state}, "
                  f"head {verified.head[:16]} seq {verified.seq}" + (", signed" if secret else ""))


@app.command()
def incidents(
    log: Annotated[Path | None, typer.Option("--log", help="An audit log file.")] = None,
    state_dir: StateOption = DEFAULT_STATE,
    key: Annotated[Path | None, typer.Option("--key", help="The audit key file, to check the signatures.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every kill (who, why, when, what was cut) and the resume that closed it, from the audit chain."""
    from triptyque.errors import AuditError
    from triptyque.gateway.audit import AuditLog
    from triptyque.gateway.incidents import incidents as derive
    from triptyque.gateway.incidents import via
    from triptyque.gateway.settings import AUDIT_FILE
    from triptyque.keys import audit_key

    path = log or state_dir / "local" / "state" / AUDIT_FILE
    local_key = state_dir / "local" / "audit.key"
    key = key or (local_key if log is None and local_key.is_file() else None)
    try:
        if not path.is_file():
            raise AuditError(f"{path}: no audit log here")
        found = derive(AuditLog(path, audit_key(key) if key else None).entries_after_last())
    except TriptyqueError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps([i.as_dict() for i in found], indent=2))
        return

    def when(ts: float | None) -> str:
        return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))

    table = Table(title=f"incidents in {path} (UTC)")
    for column in ("id", "opened", "by", "via", "why", "cut", "closed", "by", "via", "why", "stopped",
                   "approvers"):
        table.add_column(column)
    for i in found:  # names, reasons and notes are user text: printed as text, never as markup
        cut = "-" if i.in_flight is None else f"{i.interrupted} of {i.in_flight} in flight"
        stopped = "-" if i.stopped_seconds is None else f"{i.stopped_seconds:.0f} s"
        table.add_row(str(i.id), when(i.opened_at), Text(i.opened_by), Text(via(i.source)), Text(i.reason), cut,
                      "[yellow]open[/]" if i.open else when(i.closed_at), Text(i.closed_by or "-"),
                      Text(via(i.close_source)), Text(i.close_reason or "-"), stopped,
                      Text(", ".join(i.approvers) or "-"))
    console.print(table)


@keys_app.command("new")
def keys_new(name: Annotated[str, typer.Argument(help="Key name shown in logs and metrics.")],
             admin: Annotated[bool, typer.Option("--admin", help="An admin (kill switch) key.")] = False,
             ) -> None:
    """Generate a key: print it once, and the spec entry that stores only its hash."""
    from triptyque.keys import generate_key, hash_key

    key = generate_key()
    section = "admin_keys" if admin else "api_keys"
    errors.print(f"[bold]{name}[/]: give this key to its holder now; it is not stored anywhere:")
    print(key)
    errors.print(f"add to gateway.{section} in the spec:\n  {name}:\n    sha256: {hash_key(key)}")


@app.command()
def demo(spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE) -> None:
    """Bring the local target up, serve, kill, resume, verify the audit log, shut down."""
    from triptyque.demo import run_demo
    from triptyque.targets.local import LocalTarget

    try:
        target = LocalTarget(load_spec(spec, target="local"), state_dir / "local")
        run_demo(target, console, spinner)
    except TriptyqueError as exc:
        raise fail(exc) from None


def _recorded(state_dir: Path, kind: str, deployment: Target,
              **details: object) -> contextlib.AbstractContextManager[dict[str, object]]:
    """Append a deploy, down, kill or resume to the ledger (STATE_DIR/ledger.sqlite), failed or not."""
    from triptyque.burden.commands import recorded_in

    return recorded_in(state_dir, kind, deployment, details)


ledger_app = typer.Typer(no_args_is_help=True, help="The ledger of deploys, drills and kill-switch actions.")
app.add_typer(ledger_app, name="ledger")
LedgerOption = Annotated[Path | None, typer.Option(
    "--ledger", envvar="TRIPTYQUE_LEDGER", help="The ledger (SQLite); default: STATE_DIR/ledger.sqlite.")]


@app.command()
def drill(
    target: Annotated[str, typer.Argument(help="local or edge; Kubernetes drills are modelled (see compare).")],
    scenario: Annotated[str, typer.Argument(
        help="deploy, redeploy, upgrade, rollback, kill-soft, kill-hard, engine-crash, node-reboot, "
             "a comma-separated list, or all (every drill the target supports).")] = "all",
    spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE, inventory: InventoryOption = None,
    operator: OperatorOption = "", ledger: LedgerOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run scripted operations against a target, time every phase, record each run in the ledger."""
    from triptyque.burden.commands import drill_names, ledger_at, run_drills

    try:
        deployment = _target(target, spec, state_dir, inventory)
        names = drill_names(scenario, deployment)
        with spinner() as progress:
            results = run_drills(deployment, names, ledger=ledger_at(state_dir, ledger),
                                 operator=operator or _default_operator(), progress=progress)
    except TriptyqueError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    else:
        table = Table(title=f"drills on {target}")
        for column in ("drill", "outcome", "time", "phases", "metrics", "human steps", "ledger"):
            table.add_column(column)
        for r in results:
            table.add_row(r.drill, "[green]ok[/]" if r.outcome == "ok" else f"[red]failed[/] {r.error}",
                          f"{r.seconds:.1f} s", ", ".join(f"{p} {v['at']:.2f}" for p, v in r.phases.items()),
                          ", ".join(f"{k} {v:g}" for k, v in r.metrics.items()), str(r.human_steps),
                          f"#{r.entry_id}")
        console.print(table)
    raise typer.Exit(0 if all(r.outcome == "ok" for r in results) else 1)


@app.command()
def compare(
    scenario: Annotated[list[Path], typer.Option(
        "--scenario", "-s", envvar="TRIPTYQUE_SCENARIO",
        help="The TCO scenario (YAML, see burden/scenarios/); repeat it to compare scenarios side by side.")]
    = [Path("burden/scenarios/departmental.yaml")],  # noqa: B006 - typer reads the default, never mutates it
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html, report.md and report.json.")]
    = DEFAULT_STATE / "report",
    figures: Annotated[Path, typer.Option("--figures", help="The default figures (YAML).")]
    = Path("burden/figures.yaml"),
    skills: Annotated[Path, typer.Option("--skills", help="Artefact tags -> skills and roles (YAML).")]
    = Path("burden/skills.yaml"),
    rendered: Annotated[Path | None, typer.Option(
        "--rendered", help="Where `triptyque render` wrote the Kubernetes manifests (one folder per target); "
                           "default STATE_DIR/render.")] = None,
    spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE, ledger: LedgerOption = None,
) -> None:
    """Write the comparison report (HTML, Markdown, JSON): TCO, burden, drills, exit cost, scorecard."""
    from triptyque.burden.commands import build_reports, ledger_at

    try:
        paths = build_reports(
            scenario_paths=scenario, out_dir=out, ledger=ledger_at(state_dir, ledger), figures_path=figures,
            skills_path=skills, spec=load_spec(spec), rendered=rendered or state_dir / "render", spec_path=spec)
    except TriptyqueError as exc:
        raise fail(exc) from None
    for kind, path in paths.items():
        console.print(f"  {kind:<9} {path}")


@ledger_app.command("export")
def ledger_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    state_dir: StateOption = DEFAULT_STATE, ledger: LedgerOption = None,
) -> None:
    """Every ledger entry as JSON, oldest first."""
    from triptyque.burden.commands import ledger_at

    try:
        document = ledger_at(state_dir, ledger).export()
    except TriptyqueError as exc:
        raise fail(exc) from None
    if out is None:
        print(document)
    else:
        out.write_text(document + "\n", encoding="utf-8")
        console.print(f"[green]ok[/] {out}")


@ledger_app.command("verify")
def ledger_verify(state_dir: StateOption = DEFAULT_STATE, ledger: LedgerOption = None) -> None:
    """Walk the ledger's hash chain; name the first entry that was changed, removed or inserted."""
    from triptyque.burden.commands import ledger_at

    try:
        verified = ledger_at(state_dir, ledger).verify()
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[green]ok[/] ledger: {verified.entries} entries, chain intact, head {verified.head[:16]}")


@ledger_app.command("list")
def ledger_list(state_dir: StateOption = DEFAULT_STATE, ledger: LedgerOption = None,
                target: Annotated[str | None, typer.Option("--target", "-t", help="Only this target.")] = None,
                ) -> None:
    """One line per ledger entry: when, what, where, outcome, time."""
    from triptyque.burden.commands import ledger_at

    try:
        entries = ledger_at(state_dir, ledger).entries(target=target)
    except TriptyqueError as exc:
        raise fail(exc) from None
    table = Table(title=f"ledger ({len(entries)} entries)")
    for column in ("#", "recorded (UTC)", "kind", "name", "target", "outcome", "time", "git", "spec"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.id), e.recorded_at[:19], e.kind, e.name, e.target, e.outcome,
                      "-" if e.seconds is None else f"{e.seconds:.2f} s", e.git_revision[:12], e.spec_hash or "-")
    console.print(table)


@app.command()
def render(
    target: Annotated[str, typer.Argument(help=listing(names_with(Capability.RENDER)))],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the YAML manifests (GitOps).")],
    spec: SpecOption = DEFAULT_SPEC,
) -> None:
    """Write a Kubernetes target's manifests as plain YAML, one file per object."""
    from triptyque.k8s.render import render_target
    from triptyque.paths import project_root

    try:
        written = render_target(target, load_spec(spec, target=target), out, project_root())
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[green]ok[/] {len(written) - 1} manifests and PREREQUISITES.txt in {out}")


@app.command()
def preview(
    target: Annotated[str, typer.Argument(help=listing(names_with(Capability.PREVIEW)))],
    spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE,
) -> None:
    """What `up` would change on a Pulumi-managed target (with the policy pack); changes nothing."""
    try:
        deployment = make_planned(target, load_spec(spec, target=target), state_root=state_dir)
        with spinner() as progress:
            summary = deployment.preview(progress)
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[bold]{target}[/]: {summary}")


@app.command()
def bundle(
    spec: SpecOption = DEFAULT_SPEC,
    state_dir: StateOption = DEFAULT_STATE,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", envvar="TRIPTYQUE_BUNDLE",
        help="Bundle folder (default: STATE_DIR/edge/bundle, where `up edge` looks).")] = None,
    device: Annotated[list[str] | None, typer.Option(
        "--device", help="Engine build to include, cpu or gpu; repeat for both "
                         "(default: gpu when the spec asks for GPUs, else cpu).")] = None,
    inventory: Annotated[Path | None, typer.Option(
        "--inventory", "-i", help="Build a part for each (triptyque_platform, Python, engine build) "
                                  "this inventory's edge nodes run (wins over --device).")] = None,
) -> None:
    """Build the offline bundle for edge nodes: wheels, model files, checksums."""
    from triptyque.edge.bundle import build_for_spec
    from triptyque.edge.inventory import parts_needed, read_inventory
    from triptyque.edge.runner import ansible_tool
    from triptyque.engine import default_device

    try:
        bad = [d for d in device or [] if d not in ("cpu", "gpu")]
        if bad:
            raise TargetError(f"--device {bad[0]}: use cpu or gpu")
        resolved = load_spec(spec, target="edge")
        folder = output or state_dir / "edge" / "bundle"
        parts = None
        if inventory is not None:
            nodes = read_inventory(inventory, resolved.gateway.port,
                                   ansible_inventory=ansible_tool("ansible-inventory"))
            parts = parts_needed(nodes, default_device(resolved))
        with spinner() as progress:
            manifest = build_for_spec(resolved, folder, progress=progress, parts=parts,
                                      devices=tuple(device) if device else None)  # type: ignore[arg-type]
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[bold green]bundle {manifest.id}[/] in {folder}")
    for key, part in manifest.parts.items():
        console.print(f" part {key}")
        for c in part.components.values():
            console.print(f"  {c.id:<32} {c.files:>4} files {c.bytes / 1e6:9.1f} MB  sha256 {c.sha256[:16]}")


image_app = typer.Typer(no_args_is_help=True, help="Container images for the Kubernetes targets.")
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    spec: SpecOption = DEFAULT_SPEC,
    push: Annotated[str | None, typer.Option(
        "--push", metavar="REGISTRY", help="Push to this registry (e.g. registry.example:5000) and pin "
                                           "the pushed digest.")] = None,
    base: Annotated[str | None, typer.Option(
        "--base", metavar="IMAGE@DIGEST", help="Build FROM this registry image (e.g. an official "
                                               "python:3.11-slim-bookworm by digest) instead of the "
                                               "Debian base made here with debootstrap.")] = None,
) -> None:
    """Build the gateway and CPU engine images with buildah (no daemon), write their SBOMs, record
    their digests in the spec (images.gateway, images.engine_cpu)."""
    from rich.text import Text as RichText

    from triptyque.images import build_images
    from triptyque.paths import project_root

    try:
        with spinner() as progress:
            outcome = build_images(spec, project_root(), registry=push, base=base, progress=progress)
    except TriptyqueError as exc:
        raise fail(exc) from None
    for built in outcome.built:
        how = "cached" if built.cached else f"built in {built.seconds:.0f} s"
        console.print(f"[bold]{built.component}[/] {built.digest}  ({how})", highlight=False)
        console.print(f"  {built.reference}\n  SBOM {built.sbom}", highlight=False)
    for note in outcome.notes:  # a registry's message: text, never Rich markup
        errors.print("[yellow]warning:[/]", RichText(note), highlight=False)
    console.print(f"[green]ok[/] images.{', images.'.join(outcome.recorded)} recorded in {spec}")


EvidenceKeyOption = Annotated[Path, typer.Option(
    "--key", envvar="TRIPTYQUE_EVIDENCE_KEY", help="The Ed25519 signing key (its public key is KEY.pub).")]
DEFAULT_EVIDENCE_KEY = DEFAULT_STATE / "keys" / "evidence.key"


@evidence_app.command("keygen")
def evidence_keygen(key: EvidenceKeyOption = DEFAULT_EVIDENCE_KEY) -> None:
    """Create the signing key (mode 600, never printed) and its public key beside it."""
    from triptyque.evidence import generate

    try:
        pair = generate(key)
    except TriptyqueError as exc:
        raise fail(exc) from None
    console.print(f"[green]ok[/] private key {pair.private} (mode 600; keep it, never share it)\n"
                  f"  public key {pair.public}: give it to auditors\n  fingerprint {pair.fingerprint}",
                  highlight=False)


@evidence_app.command("build")
def evidence_build(
    target: TargetOption = "local", spec: SpecOption = DEFAULT_SPEC, state_dir: StateOption = DEFAULT_STATE,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the bundle and its .tar "
                                                                 "(default: STATE_DIR/evidence).")] = None,
    key: EvidenceKeyOption = DEFAULT_EVIDENCE_KEY,
) -> None:
    """Gather, check, list (SHA-256) and sign what produced a target's deployment: one folder, one .tar."""
    from triptyque.evidence import build_bundle

    try:
        with spinner() as progress:
            progress(f"gathering and checking the evidence for {target}")
            bundle = build_bundle(target, spec_path=spec, key_path=key, out_dir=out or state_dir / "evidence",
                                  state_dir=state_dir)
    except TriptyqueError as exc:
        raise fail(exc) from None
    for note in bundle.notes:
        console.print(f"  [dim]note[/] {note}", highlight=False)
    tree = "clean" if bundle.clean else "[yellow]with uncommitted changes[/]"
    console.print(f"[green]ok[/] {bundle.files} files, signed by {bundle.fingerprint[:16]}, "
                  f"revision {bundle.revision[:12]} {tree}\n  {bundle.folder}\n  {bundle.archive}", highlight=False)


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder or its .tar archive.")],
    key: Annotated[Path | None, typer.Option("--key", help="The signer's public key (KEY.pub) to trust; "
                                                           "without it, the fingerprint is printed to compare.")]
    = None,
) -> None:
    """Re-hash every file, check the signature and the audit chain; name the first mismatch."""
    from triptyque.evidence import verify_bundle

    try:
        checked = verify_bundle(bundle, key)
    except TriptyqueError as exc:
        raise fail(exc) from None
    from rich.markup import escape

    trust = "the trusted key" if key else "key"
    console.print(f"[green]ok[/] {checked.files} files match, signed by {trust} {checked.fingerprint[:16]}, "
                  f"target {escape(checked.target)}, revision {escape(checked.revision[:12])}"
                  f"{'' if checked.clean else ' (uncommitted changes)'}, built {escape(checked.created)}; "
                  f"{checked.audit}", highlight=False)


@app.command("pull-serve")
def pull_serve(
    listen: Annotated[list[str], typer.Option(
        "--listen", help="ADDRESS:PORT the pull nodes reach; repeat for several addresses.")],
    state_dir: StateOption = DEFAULT_STATE,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="PEM certificate: serve HTTPS (give the nodes its CA as triptyque_pull_ca).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the edge pull nodes: their publication, the fleet's kill state, their reports."""
    from triptyque.edge.pull import Tls, serve

    try:
        pairs = [item.rpartition(":") for item in listen]
        if any(not host or not port.isdigit() for host, _, port in pairs):
            raise TargetError("--listen takes ADDRESS:PORT, e.g. 10.0.0.1:8470")
        ports = {int(port) for _, _, port in pairs}
        if len(ports) != 1:
            raise TargetError("--listen: use one port for every address")
        if (tls_cert is None) != (tls_key is None):
            raise TargetError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
        tls = Tls(tls_cert, tls_key).check() if tls_cert and tls_key else None
        scheme = "https" if tls else "http"
        console.print(f"pull endpoint on {', '.join(f'{scheme}://{item}' for item in listen)}; Ctrl-C stops it")
        serve(state_dir / "edge", [host.strip("[]") for host, _, _ in pairs], ports.pop(), tls)
    except TriptyqueError as exc:
        raise fail(exc) from None


def main() -> None:  # the `triptyque` console script
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app(prog_name="triptyque")


if __name__ == "__main__":
    main()
