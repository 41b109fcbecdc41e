"""The Kubernetes targets (onprem, cloud) and the cloud-vm flavour.

``up``, ``preview`` and ``down`` drive the Pulumi program under ``stacks/`` through the
Automation API, with the policy pack of ``stacks/policies``; before touching anything
they check the Pulumi CLI, the Python packages, the backend login, the kubeconfig
context (onprem) and the Scaleway credentials (cloud, cloud-vm), and say in one line
what is missing and how to provide it.

``kill``, ``resume`` and ``status`` talk to the cluster itself: the decision is
written to the kill-switch ConfigMap with the same code the gateways run (so the audit
chain stays one), every gateway sees it through its watch, and each replica's
``/readyz`` is read through the API server's pod proxy to confirm it stopped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from triptyque.errors import MissingToolError, StateError, TargetError, TriptyqueError
from triptyque.gateway.killswitch import KillSwitch, PersistError
from triptyque.gateway.settings import ClusterState
from triptyque.gateway.state_k8s import ConfigMapAuditLog, ConfigMapStateStore, KubeConnection
from triptyque.k8s.config import StackConfig, load_stack_config, project_root
from triptyque.k8s.render import names_for
from triptyque.spec import ServiceSpec, load_spec
from triptyque.targets.base import Endpoint, NodeReport, Progress

KubeTarget = Literal["onprem", "cloud"]
PULUMI_INSTALL = "install it (https://www.pulumi.com/docs/install/, e.g. `curl -fsSL https://get.pulumi.com | sh`)"
SCALEWAY_VARIABLES = {
    "SCW_ACCESS_KEY": "access key of an API key, Scaleway console > IAM > API keys",
    "SCW_SECRET_KEY": "its secret key",
    "SCW_DEFAULT_PROJECT_ID": "the project to create resources in, console > Project settings",
}
CONFIRM_SECONDS = 3.0

StackFactory = Callable[[str, Path], Any]
Which = Callable[[str], str | None]


def _automation_stack(name: str, root: Path) -> Any:
    from pulumi import automation

    return automation.create_or_select_stack(stack_name=name, work_dir=str(root))


def _kubeconfig_paths(env: Mapping[str, str]) -> list[Path]:
    if env.get("KUBECONFIG"):
        return [Path(p).expanduser() for p in env["KUBECONFIG"].split(os.pathsep) if p]
    return [Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"]


def _kube_contexts(paths: list[Path]) -> set[str] | None:
    found: set[str] | None = None
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        found = (found or set()) | {c.get("name") for c in document.get("contexts") or [] if c.get("name")}
    return found


def _backend_problem(env: Mapping[str, str]) -> str | None:
    backend = env.get("PULUMI_BACKEND_URL")
    if not backend and not env.get("PULUMI_ACCESS_TOKEN"):
        credentials = Path(env.get("PULUMI_HOME", str(Path(env.get("HOME", str(Path.home()))) / ".pulumi")))
        try:
            backend = json.loads((credentials / "credentials.json").read_text()).get("current")
        except (OSError, ValueError):
            backend = None
        if not backend:
            return ("no Pulumi backend: run `pulumi login` (or `pulumi login --local`), or set "
                    "PULUMI_BACKEND_URL (e.g. file://~/.pulumi-state)")
    local = str(backend or "").startswith("file://")
    if local and not (env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        return ("the local Pulumi backend encrypts stack secrets with a passphrase: set "
                "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE")
    return None


def deploy_problems(
    config: StackConfig, env: Mapping[str, str], which: Which
) -> tuple[list[str], bool]:
    """What `up`, `preview` and `down` lack, and whether a tool is among it."""
    problems: list[str] = []
    tool_missing = False
    if which("pulumi") is None:
        problems.append(f"the Pulumi CLI is not on PATH: {PULUMI_INSTALL}")
        tool_missing = True
    packages = ["pulumi", "pulumi_policy"]
    packages += ["pulumi_kubernetes"] if config.target != "cloud-vm" else []
    packages += ["pulumiverse_scaleway"] if config.target != "onprem" else []
    absent = [p for p in packages if importlib.util.find_spec(p) is None]
    if absent:
        problems.append(f"Python packages {', '.join(absent)} are missing: pip install 'triptyque[k8s]'")
        tool_missing = True
    if config.target == "onprem":
        paths = _kubeconfig_paths(env)
        contexts = _kube_contexts(paths)
        where = os.pathsep.join(str(p) for p in paths)
        if contexts is None:
            problems.append(f"no kubeconfig at {where}: set KUBECONFIG to your cluster's kubeconfig")
        elif config.kube_context not in contexts:
            problems.append(
                f"kubeconfig {where} has no context {config.kube_context!r}: set "
                "triptyque:kubeContext in Pulumi.onprem.yaml to one of "
                f"{', '.join(sorted(contexts)) or '(none)'}"
            )
    else:
        missing = [name for name in SCALEWAY_VARIABLES if not env.get(name)]
        if missing:
            problems.append("Scaleway credentials missing: export " + ", ".join(
                f"{name} ({SCALEWAY_VARIABLES[name]})" for name in missing
            ))
    backend = _backend_problem(env)
    if backend:
        problems.append(backend)
    return problems, tool_missing


class _PulumiStack:
    """The Automation API side shared by the Kubernetes targets and cloud-vm."""

    name: str

    def __init__(
        self, name: str, spec: ServiceSpec, *, root: Path | None, env: Mapping[str, str] | None,
        which: Which, stack_factory: StackFactory,
    ) -> None:
        self.name, self.spec = name, spec
        self.root = root or project_root()
        self.config = load_stack_config(self.root, name)
        self._env = os.environ if env is None else env
        self._which = which
        self._stack_factory = stack_factory

    def _stack(self, verb: str) -> Any:
        problems, tool_missing = deploy_problems(self.config, self._env, self._which)
        if problems:
            error = MissingToolError if tool_missing else TargetError
            raise error(f"cannot {verb} {self.name}: " + "; ".join(problems))
        stack_spec = load_spec(
            self.root / self.config.spec, "onprem" if self.name == "onprem" else "cloud"
        )
        if stack_spec.spec_hash() != self.spec.spec_hash():
            raise TargetError(
                f"the {self.name} stack deploys {self.config.spec} (triptyque:spec in "
                f"Pulumi.{self.name}.yaml), not the spec given: pass --spec {self.config.spec}"
            )
        try:
            return self._stack_factory(self.name, self.root)
        except Exception as exc:  # the Automation API raises its own types and OSError
            raise TargetError(f"cannot open Pulumi stack {self.name}: {exc}") from None

    @property
    def policy_packs(self) -> list[str]:
        return [str(self.root / "stacks" / "policies")]

    def preview(self, progress: Progress) -> str:
        stack = self._stack("preview")
        try:
            result = stack.preview(on_output=progress, policy_packs=self.policy_packs)
        except Exception as exc:
            raise TargetError(f"pulumi preview of {self.name} failed: {exc}") from None
        changes = ", ".join(f"{op} {n}" for op, n in sorted(result.change_summary.items()))
        return changes or "no changes"

    def _pulumi_up(self, progress: Progress) -> dict[str, Any]:
        stack = self._stack("deploy")
        try:
            result = stack.up(on_output=progress, policy_packs=self.policy_packs)
        except Exception as exc:
            raise TargetError(f"pulumi up of {self.name} failed: {exc}") from None
        return {key: output.value for key, output in result.outputs.items()}

    def down(self, progress: Progress) -> None:
        stack = self._stack("destroy")
        try:
            stack.destroy(on_output=progress)
        except Exception as exc:
            raise TargetError(f"pulumi destroy of {self.name} failed: {exc}") from None


class KubernetesTarget(_PulumiStack):
    def __init__(
        self,
        name: KubeTarget,
        spec: ServiceSpec,
        *,
        state_root: Path,
        root: Path | None = None,
        env: Mapping[str, str] | None = None,
        connection: KubeConnection | None = None,
        which: Which = shutil.which,
        stack_factory: StackFactory = _automation_stack,
    ) -> None:
        super().__init__(name, spec, root=root, env=env, which=which, stack_factory=stack_factory)
        self.state_dir = state_root / name
        self.names = names_for(spec, self.config)
        self._connection = connection

    @property
    def kubeconfig_file(self) -> Path:
        return self.state_dir / "kubeconfig"

    def up(self, progress: Progress) -> list[Endpoint]:
        outputs = self._pulumi_up(progress)
        if outputs.get("kubeconfig"):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.kubeconfig_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(str(outputs["kubeconfig"]))
            progress(f"kubeconfig of the {self.name} cluster saved to {self.kubeconfig_file}")
        return [Endpoint("gateway", str(outputs.get("gatewayUrl", "")))]

    # ---- the cluster side: kill, resume, status -------------------------------------------

    def connection(self) -> KubeConnection:
        if self._connection is None:
            try:
                if self.name == "onprem":
                    self._connection = KubeConnection.from_kubeconfig(self.config.kube_context)
                elif self.kubeconfig_file.is_file():
                    self._connection = KubeConnection.from_kubeconfig(None, str(self.kubeconfig_file))
                else:
                    raise TargetError(
                        f"no kubeconfig for the cloud cluster at {self.kubeconfig_file}: run "
                        "`triptyque up cloud` (it saves it there), or `pulumi stack output "
                        f"kubeconfig --show-secrets -s cloud > {self.kubeconfig_file}`"
                    )
            except StateError as exc:
                raise TargetError(str(exc)) from None
        return self._connection

    def _cluster_state(self) -> ClusterState:
        return ClusterState(namespace=self.names.namespace, configmap=self.names.killswitch)

    async def _decide(self, action: Literal["kill", "resume"], operator: str, reason: str) -> None:
        connection = self.connection()
        switch = KillSwitch(
            ConfigMapStateStore(self._cluster_state(), connection),
            ConfigMapAuditLog(self._cluster_state(), connection),
        )
        switch.start(watch_interval=None)
        source = f"triptyque {action} --target {self.name}"
        try:
            if action == "kill":
                await switch.engage(operator, reason, source)
            else:
                await switch.release(operator, reason, source)
        except PersistError as exc:
            raise TargetError(f"{action} was not recorded in the cluster: {exc}") from None

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            with self.connection().client() as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TargetError(f"the API server of {self.name} did not answer: {exc}") from None
        if response.status_code >= 400:
            raise TargetError(
                f"{method} {path} on {self.name}: HTTP {response.status_code}: {response.text[:200]}"
            )
        return response

    def _gateway_pods(self) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in self.names.selector("gateway").items())
        response = self._api("GET", f"/api/v1/namespaces/{self.names.namespace}/pods",
                             params={"labelSelector": selector})
        pods: list[dict[str, Any]] = response.json().get("items") or []
        return pods

    def _probe(self, client: httpx.Client, pod: dict[str, Any], started: float) -> NodeReport:
        name = pod["metadata"]["name"]
        path = (f"/api/v1/namespaces/{self.names.namespace}/pods/{name}:"
                f"{self.spec.gateway.port}/proxy/readyz")
        node = (pod.get("spec") or {}).get("nodeName", "")
        try:
            response = client.get(path)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return NodeReport(name, path, reachable=False, seconds=time.perf_counter() - started,
                              detail=f"unreachable: {type(exc).__name__}", extra={"node": node})
        return NodeReport(
            name, path, reachable=True, engaged=bool(body.get("kill_switch_engaged")),
            ready=response.status_code == 200, seconds=time.perf_counter() - started,
            detail=str(body.get("reason", "")), extra={"node": node},
        )

    def _confirm(self, engaged: bool | None, started: float) -> list[NodeReport]:
        """Each gateway's own answer; with ``engaged``, wait until each says so (or time out)."""
        pods = self._gateway_pods()
        if not pods:
            raise TargetError(f"no gateway pod in namespace {self.names.namespace}: is {self.name} up?")
        reports: dict[str, NodeReport] = {}
        with self.connection().client() as client:
            while True:
                for pod in pods:
                    name = pod["metadata"]["name"]
                    if name not in reports or reports[name].engaged != engaged:
                        reports[name] = self._probe(client, pod, started)
                settled = engaged is None or all(r.engaged == engaged for r in reports.values())
                if settled or time.perf_counter() - started > CONFIRM_SECONDS:
                    return [reports[p["metadata"]["name"]] for p in pods]
                time.sleep(0.05)

    def _scale_engine(self, replicas: int) -> NodeReport:
        started = time.perf_counter()
        path = f"/apis/apps/v1/namespaces/{self.names.namespace}/deployments/{self.names.engine}/scale"
        current = int(self._api("GET", path).json().get("spec", {}).get("replicas", 0))
        if current != replicas:
            self._api("PATCH", path, content=json.dumps({"spec": {"replicas": replicas}}),
                      headers={"Content-Type": "application/merge-patch+json"})
        # "stopped" for the engine means no replica holds a GPU.
        return NodeReport(self.names.engine, path, reachable=True, engaged=replicas == 0,
                          seconds=time.perf_counter() - started,
                          detail=f"engine replicas {current} -> {replicas}", extra={"replicas": replicas})

    def status(self) -> list[NodeReport]:
        return self._confirm(None, time.perf_counter())

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        started = time.perf_counter()
        asyncio.run(self._decide("kill", operator, reason))
        reports = self._confirm(True, started)
        if hard:
            if not self.spec.kill_switch.stop_engine_on_hard_kill:
                raise TargetError("--hard: kill_switch.stop_engine_on_hard_kill is false in the spec; "
                                  "the gateways are stopped, the engine keeps its GPUs")
            reports.append(self._scale_engine(0))
        return reports

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        started = time.perf_counter()
        engine = self._scale_engine(1)
        asyncio.run(self._decide("resume", operator, reason))
        return [*self._confirm(False, started), engine]


class CloudVmTarget(_PulumiStack):
    """Scaleway GPU instances from Pulumi, then the edge target with the exported inventory."""

    def __init__(
        self,
        spec: ServiceSpec,
        *,
        state_root: Path,
        root: Path | None = None,
        env: Mapping[str, str] | None = None,
        which: Which = shutil.which,
        stack_factory: StackFactory = _automation_stack,
    ) -> None:
        super().__init__("cloud-vm", spec, root=root, env=env, which=which, stack_factory=stack_factory)
        self.state_root = state_root
        self.inventory = state_root / "cloud-vm" / "inventory.yml"

    def _edge(self) -> Any:
        if not self.inventory.is_file():
            raise TargetError(f"no inventory at {self.inventory}: run `triptyque up cloud-vm` first")
        from triptyque.targets.registry import make_target

        try:
            # Its own state folder: the same checkout may also run a real edge fleet.
            return make_target("edge", self.spec, state_root=self.state_root / "cloud-vm",
                               inventory=self.inventory)
        except TriptyqueError as exc:
            raise TargetError(f"cloud-vm hands its machines to the edge target: {exc}") from None

    def up(self, progress: Progress) -> list[Endpoint]:
        outputs = self._pulumi_up(progress)
        self.inventory.parent.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(str(outputs["inventory"]), encoding="utf-8")
        progress(f"inventory of the GPU instances written to {self.inventory}")
        endpoints: list[Endpoint] = self._edge().up(progress)
        return endpoints

    def status(self) -> list[NodeReport]:
        reports: list[NodeReport] = self._edge().status()
        return reports

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]:
        reports: list[NodeReport] = self._edge().kill(operator, reason, hard=hard)
        return reports

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]:
        reports: list[NodeReport] = self._edge().resume(operator, reason)
        return reports
