"""up/preview/down fail early, in one line, naming what is missing, and touch nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT as REPO
from triptyque.errors import MissingToolError, TargetError
from triptyque.spec import ServiceSpec, load_spec
from triptyque.targets import registry
from triptyque.targets.cloud_vm import CloudVmTarget
from triptyque.targets.kubernetes import KubernetesTarget
from triptyque.types import Endpoint


@dataclass
class Output:
    value: Any


@dataclass
class FakeStack:
    """Stands in for pulumi.automation.Stack: records what the target asked of it."""

    outputs: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def up(self, **kwargs: Any) -> Any:
        self.calls.append(("up", kwargs))
        return type("UpResult", (), {"outputs": {k: Output(v) for k, v in self.outputs.items()}})()

    def preview(self, **kwargs: Any) -> Any:
        self.calls.append(("preview", kwargs))
        return type("PreviewResult", (), {"change_summary": {"create": 27, "same": 0}})()

    def destroy(self, **kwargs: Any) -> None:
        self.calls.append(("destroy", kwargs))


@dataclass
class Factory:
    stack: FakeStack = field(default_factory=FakeStack)
    opened: list[tuple[str, Path]] = field(default_factory=list)

    def __call__(self, name: str, root: Path) -> FakeStack:
        self.opened.append((name, root))
        return self.stack


def shipped_spec(target: str) -> ServiceSpec:
    return load_spec(REPO / "serving" / "service.yaml", target)


def ready_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"contexts": [{"name": "onprem-admin", "context": {}}]}))
    return {
        "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig),
        "PULUMI_BACKEND_URL": f"file://{tmp_path}/state", "PULUMI_CONFIG_PASSPHRASE": "test",
        "SCW_ACCESS_KEY": "SCWXXXXXXXXXXXXXXXXX", "SCW_SECRET_KEY": "secret", "SCW_DEFAULT_PROJECT_ID": "project",
        **extra,
    }


def on_path(tool: str) -> str | None:
    return f"/usr/local/bin/{tool}"


def nowhere(tool: str) -> None:
    return None


def target(name: str, tmp_path: Path, env: dict[str, str], which: Any = on_path,
           factory: Factory | None = None, spec: ServiceSpec | None = None) -> KubernetesTarget:
    return KubernetesTarget(name, spec or shipped_spec(name), state_root=tmp_path / "state", root=REPO,  # type: ignore[arg-type]
                            env=env, which=which, stack_factory=factory or Factory())


@pytest.mark.parametrize("verb", ["up", "preview", "down"])
def test_without_the_pulumi_cli_every_deploy_verb_says_how_to_install_it(tmp_path, verb):
    factory = Factory()
    deployment = target("onprem", tmp_path, ready_env(tmp_path), which=nowhere, factory=factory)
    with pytest.raises(MissingToolError) as caught:
        getattr(deployment, verb)(lambda _message: None)
    message = str(caught.value)
    assert "\n" not in message
    assert "the Pulumi CLI is not on PATH: install it" in message
    assert "get.pulumi.com" in message
    assert factory.opened == []


def test_cloud_without_scaleway_credentials_names_each_missing_variable(tmp_path):
    env = ready_env(tmp_path)
    for name in ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID"):
        env.pop(name)
    factory = Factory()
    with pytest.raises(TargetError) as caught:
        target("cloud", tmp_path, env, factory=factory).up(lambda _m: None)
    message = str(caught.value)
    assert message.startswith("cannot deploy cloud: Scaleway credentials missing: export SCW_ACCESS_KEY")
    assert "SCW_SECRET_KEY" in message and "SCW_DEFAULT_PROJECT_ID" in message
    assert not isinstance(caught.value, MissingToolError)
    assert factory.opened == []


def test_onprem_without_the_configured_kube_context_lists_the_ones_there_are(tmp_path):
    env = ready_env(tmp_path)
    Path(env["KUBECONFIG"]).write_text(yaml.safe_dump({"contexts": [{"name": "lab", "context": {}}]}))
    with pytest.raises(TargetError, match=r"has no context 'onprem-admin': set triptyque:kubeContext .* one of lab"):
        target("onprem", tmp_path, env).preview(lambda _m: None)
    env["KUBECONFIG"] = str(tmp_path / "absent")
    with pytest.raises(TargetError, match=r"no kubeconfig at .*absent: set KUBECONFIG"):
        target("onprem", tmp_path, env).preview(lambda _m: None)


def test_without_a_pulumi_backend_or_its_passphrase_the_fix_is_named(tmp_path):
    env = ready_env(tmp_path)
    env.pop("PULUMI_BACKEND_URL")
    with pytest.raises(TargetError, match=r"no Pulumi backend: run `pulumi login`"):
        target("onprem", tmp_path, env).up(lambda _m: None)
    env = ready_env(tmp_path)
    env.pop("PULUMI_CONFIG_PASSPHRASE")
    with pytest.raises(TargetError, match="set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"):
        target("onprem", tmp_path, env).up(lambda _m: None)


def test_several_missing_things_are_reported_together_on_one_line(tmp_path):
    env = {"HOME": str(tmp_path)}
    with pytest.raises(MissingToolError) as caught:
        target("cloud", tmp_path, env, which=nowhere).up(lambda _m: None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.count("; ") == 2  # the CLI, the credentials, the backend


def test_a_spec_other_than_the_stack_s_is_refused_before_pulumi_runs(tmp_path, spec_file):
    factory = Factory()
    deployment = target("onprem", tmp_path, ready_env(tmp_path), factory=factory,
                        spec=load_spec(spec_file, "onprem"))
    with pytest.raises(TargetError, match=re.escape("pass --spec serving/service.yaml")):
        deployment.up(lambda _m: None)
    assert factory.opened == []


def test_with_everything_in_place_up_runs_the_stack_with_the_policy_pack(tmp_path):
    factory = Factory(FakeStack(outputs={"gatewayUrl": "https://llm.example.internal"}))
    endpoints = target("onprem", tmp_path, ready_env(tmp_path), factory=factory).up(lambda _m: None)
    assert factory.opened == [("onprem", REPO)]
    verb, options = factory.stack.calls[0]
    assert verb == "up"
    assert options["policy_packs"] == [str(REPO / "stacks" / "policies")]
    assert endpoints == [Endpoint("gateway", "https://llm.example.internal")]


def test_cloud_up_keeps_the_cluster_kubeconfig_private_for_kill_and_status(tmp_path):
    factory = Factory(FakeStack(outputs={"gatewayUrl": "http://51.15.0.1:8080", "kubeconfig": "apiVersion: v1\n"}))
    deployment = target("cloud", tmp_path, ready_env(tmp_path), factory=factory)
    deployment.up(lambda _m: None)
    assert deployment.kubeconfig_file.read_text() == "apiVersion: v1\n"
    assert deployment.kubeconfig_file.stat().st_mode & 0o777 == 0o600
    assert target("cloud", tmp_path, ready_env(tmp_path)).preview(lambda _m: None) == "create 27, same 0"


def test_cloud_kill_without_a_saved_kubeconfig_says_where_to_get_one(tmp_path):
    with pytest.raises(TargetError, match=r"run `triptyque up cloud`.*pulumi stack output kubeconfig"):
        target("cloud", tmp_path, ready_env(tmp_path)).kill("jane", "drill")


def test_cloud_vm_writes_the_exported_inventory_and_hands_it_to_the_edge_target(tmp_path):
    handed: list[tuple[ServiceSpec, Path, Path]] = []

    class Edge:
        def up(self, progress: Any) -> list[Endpoint]:
            return [Endpoint("gpu-0", "http://51.15.0.10:8080")]

    def edge_target(spec: ServiceSpec, root: Path, inventory: Path) -> Any:
        handed.append((spec, root, inventory))
        return Edge()

    inventory = "all:\n  children:\n    edge:\n      hosts: {}\n"
    factory = Factory(FakeStack(outputs={"inventory": inventory}))
    spec = shipped_spec("cloud-vm")
    deployment = CloudVmTarget(spec, state_root=tmp_path, root=REPO, env=ready_env(tmp_path),
                               which=on_path, stack_factory=factory, edge_factory=edge_target)
    endpoints = deployment.up(lambda _m: None)
    assert factory.opened == [("cloud-vm", REPO)]
    assert deployment.inventory.read_text() == inventory
    assert handed == [(spec, tmp_path / "cloud-vm", deployment.inventory)]
    assert endpoints == [Endpoint("gpu-0", "http://51.15.0.10:8080")]


def test_the_registry_builds_the_kubernetes_targets():
    spec = shipped_spec("onprem")
    assert isinstance(registry.make_target("onprem", spec, state_root=Path("/tmp/x")), KubernetesTarget)
    assert isinstance(registry.make_target("cloud", shipped_spec("cloud"), state_root=Path("/tmp/x")),
                      KubernetesTarget)
    assert isinstance(registry.make_target("cloud-vm", shipped_spec("cloud-vm"), state_root=Path("/tmp/x")),
                      CloudVmTarget)
