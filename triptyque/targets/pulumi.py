"""The Pulumi side of the stack-deployed targets (onprem, cloud, cloud-vm).

``up``, ``preview`` and ``down`` drive the Pulumi program under ``stacks/`` through the
Automation API, with the policy pack of ``stacks/policies``; before touching anything
they check the Pulumi CLI, the Python packages, the backend login, the kubeconfig
context (onprem) and the Scaleway credentials (cloud, cloud-vm), and say in one line
what is missing and how to provide it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from triptyque.errors import MissingToolError, TargetError
from triptyque.k8s.config import StackConfig, load_stack_config
from triptyque.paths import project_root
from triptyque.spec import ServiceSpec, load_spec
from triptyque.types import Progress

PULUMI_INSTALL = "install it (https://www.pulumi.com/docs/install/, e.g. `curl -fsSL https://get.pulumi.com | sh`)"
SCALEWAY_VARIABLES = {
    "SCW_ACCESS_KEY": "access key of an API key, Scaleway console > IAM > API keys",
    "SCW_SECRET_KEY": "its secret key",
    "SCW_DEFAULT_PROJECT_ID": "the project to create resources in, console > Project settings",
}

StackFactory = Callable[[str, Path], Any]
Which = Callable[[str], str | None]


def automation_stack(name: str, root: Path) -> Any:
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


class PulumiStack:
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
        stack_spec = load_spec(self.root / self.config.spec, self.name)
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
