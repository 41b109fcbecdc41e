"""The Pulumi program under mocks, for the onprem and cloud stacks and the cloud-vm flavour.

Every policy of the pack is checked against every resource each stack registers; a
failure names the resource's URN. The other tests say what each stack builds.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

from stacks.inference import _ignored_fields
from stacks.policies.rules import RULES, Rule, containers, pod_spec
from stacks.program import read_config
from tests.stacks.conftest import Ran, example, run_entry_point, run_stack
from tests.support import ROOT as REPO
from triptyque.k8s.charts import load_chart
from triptyque.k8s.config import GPU_POOL_LABEL, load_stack_config

STACKS = ("onprem", "cloud", "cloud-vm")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
@pytest.mark.parametrize("name", STACKS)
def test_every_resource_of_every_stack_passes_the_policy(stacks: dict[str, Ran], name: str, rule: Rule):
    failures = [f"{seen.urn}: {message}" for seen in stacks[name].resources for message in rule.check(seen)]
    assert not failures, "\n".join(failures)


def test_the_policies_have_something_to_check_in_each_stack(stacks):
    onprem, cloud, vm = stacks["onprem"], stacks["cloud"], stacks["cloud-vm"]
    for ran in (onprem, cloud):
        deployments = ran.of_type("kubernetes:apps/v1:Deployment")
        assert len(deployments) == 2
        assert all(len(containers(pod_spec(d) or {})) == 1 for d in deployments)
        settings = [c for c in ran.of_type("kubernetes:core/v1:ConfigMap")
                    if "settings.json" in (c.props.get("data") or {})]
        assert len(settings) == 1
    assert [s.props["spec"]["type"] for s in cloud.of_type("kubernetes:core/v1:Service")].count("LoadBalancer") == 1
    # network, egress IP, public gateway, its route, cluster, API ACL, two pools
    assert len([r for r in cloud.resources if r.type.startswith("scaleway:")]) == 8
    assert len(vm.of_type("scaleway:instance/securityGroup:SecurityGroup")) == 1


def test_every_kubernetes_object_belongs_to_the_inference_service_component(stacks):
    for name in ("onprem", "cloud"):
        objects = [r for r in stacks[name].resources if r.type.startswith("kubernetes:")
                   and r.type != "kubernetes:helm.sh/v3:Release"]
        assert len(objects) >= 19  # no model-files ConfigMap: GPU targets read hub weights
        outside = [r.urn for r in objects if "triptyque:k8s:InferenceService$" not in r.urn]
        assert not outside, "\n".join(outside)


def test_onprem_deploys_to_the_configured_context_after_its_pinned_charts(stacks):
    onprem = stacks["onprem"]
    provider = onprem.one("pulumi:providers:kubernetes", "onprem")
    assert provider.props["context"] == "onprem-admin"
    releases = {r.props["name"]: r.props for r in onprem.of_type("kubernetes:helm.sh/v3:Release")}
    assert set(releases) == {"kube-prometheus-stack", "gpu-operator"}
    for name, props in releases.items():
        pinned = load_chart(REPO / "charts", name)
        assert props["version"] == pinned.version and props["chart"] == pinned.chart
        assert props["repositoryOpts"]["repo"] == pinned.repository
    deployment = onprem.one("kubernetes:apps/v1:Deployment", "triptyque-llm-engine")
    assert deployment.provider_props["context"] == "onprem-admin"
    assert onprem.outputs["gatewayUrl"] == "https://llm.example.internal"


def test_onprem_with_an_existing_prometheus_installs_only_the_crds(test_spec):
    config = example("onprem", test_spec)
    ran = run_stack(config.model_copy(update={
        "monitoring": config.monitoring.model_copy(update={"prometheus": "crds"}), "gpu_operator": False,
    }))
    assert [r.props["name"] for r in ran.of_type("kubernetes:helm.sh/v3:Release")] == ["prometheus-operator-crds"]
    assert ran.outputs["charts"] == ["prometheus-operator-crds"]


def test_the_cloud_stack_builds_a_pinned_kapsule_on_a_private_network_in_france(stacks):
    cloud = stacks["cloud"]
    cluster = cloud.one("scaleway:kubernetes/cluster:Cluster", "kapsule")
    assert cluster.props["version"] == "1.34.1"
    assert cluster.props["autoUpgrade"]["enable"] is False
    assert cluster.props["region"] == "fr-par"
    assert cluster.props["privateNetworkId"] == "kapsule-private-id"
    assert (cluster.provider_props["region"], cluster.provider_props["zone"]) == ("fr-par", "fr-par-2")
    assert cloud.outputs["region"] == "fr-par"


def test_the_cloud_gpu_pool_uses_the_spec_node_type_is_tainted_and_autoscales(stacks):
    pool = stacks["cloud"].one("scaleway:kubernetes/pool:Pool", "kapsule-gpu")
    assert pool.props["nodeType"] == "L4-1-24G"
    assert pool.props["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert pool.props["labels"] == {GPU_POOL_LABEL: "gpu"}
    assert pool.props["autoscaling"] is True
    assert (pool.props["minSize"], pool.props["maxSize"]) == (1, 2)
    engine = stacks["cloud"].one("kubernetes:apps/v1:Deployment", "triptyque-llm-engine")
    assert engine.props["spec"]["template"]["spec"]["nodeSelector"] == {GPU_POOL_LABEL: "gpu"}
    assert engine.provider_props["kubeconfig"] is not None


def test_the_cloud_kubeconfig_is_exported_as_a_secret_and_only_gpu_charts_needed_are_installed(stacks):
    cloud = stacks["cloud"]
    assert cloud.outputs["kubeconfig"].startswith("apiVersion: v1")
    assert [r.props["name"] for r in cloud.of_type("kubernetes:helm.sh/v3:Release")] == ["kube-prometheus-stack"]


def test_the_cloud_vm_flavour_exports_an_inventory_of_its_gpu_instances(stacks):
    vm = stacks["cloud-vm"]
    servers = vm.of_type("scaleway:instance/server:Server")
    assert [s.props["type"] for s in servers] == ["L4-1-24G"]
    assert servers[0].props["zone"] == "fr-par-2"
    inventory = yaml.safe_load(vm.outputs["inventory"])
    hosts = inventory["edge"]["hosts"]
    assert list(hosts) == ["triptyque-llm-gpu-0"]
    assert hosts["triptyque-llm-gpu-0"]["ansible_host"].startswith("51.15.0.")
    assert hosts["triptyque-llm-gpu-0"]["triptyque_engine_device"] == "gpu"
    # GPU OS 12 is Ubuntu 24.04: the edge bundle then carries a part from noble's archive.
    assert hosts["triptyque-llm-gpu-0"]["triptyque_platform"] == "ubuntu-24.04-amd64"
    assert inventory["edge"]["vars"] == {"ansible_user": "root"}
    assert servers[0].props["ipId"] == "gpu-ip-0-id"
    group = vm.of_type("scaleway:instance/securityGroup:SecurityGroup")[0]
    ports = sorted({rule["port"] for rule in group.props["inboundRules"]})
    assert ports == [22, 8080]


def test_fields_other_writers_own_are_left_alone_by_pulumi():
    assert _ignored_fields({"kind": "ConfigMap", "metadata": {"labels": {
        "app.kubernetes.io/component": "killswitch"}}}) == ["data", "binaryData"]
    assert _ignored_fields({"kind": "Deployment", "metadata": {"labels": {
        "app.kubernetes.io/component": "engine"}}}) == ["spec.replicas"]
    assert _ignored_fields({"kind": "Deployment", "metadata": {"labels": {
        "app.kubernetes.io/component": "gateway"}}}) == []


def test_the_shipped_spec_s_placeholder_digests_stop_the_program_with_one_clear_line():
    config = load_stack_config(REPO, "onprem")
    with pytest.raises(pulumi.RunError, match=re.escape("images.engine: the digest is the zero placeholder")):
        run_stack(config)


@pytest.mark.parametrize("name", STACKS)
def test_the_program_reads_each_example_stack_file_as_the_cli_does(name):
    raw = yaml.safe_load((REPO / f"Pulumi.{name}.yaml").read_text())["config"]
    as_pulumi = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    pulumi.runtime.set_all_config(as_pulumi)
    try:
        assert read_config() == load_stack_config(REPO, name)
    finally:
        pulumi.runtime.set_all_config({})


def test_the_entry_point_pulumi_runs_reads_the_config_builds_and_exports(test_spec):
    raw = yaml.safe_load((REPO / "Pulumi.onprem.yaml").read_text())["config"]
    raw["triptyque:spec"] = str(test_spec)
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()})
    exported: dict[str, object] = {}
    original = pulumi.export
    try:
        pulumi.export = lambda name, value: exported.__setitem__(name, value)  # type: ignore[assignment]
        ran = run_entry_point()
    finally:
        pulumi.export = original
        pulumi.runtime.set_all_config({})
    assert {"namespace", "gatewayUrl", "killSwitchConfigMap", "charts", "specHash"} <= set(exported)
    assert len(ran.of_type("kubernetes:apps/v1:Deployment")) == 2


def test_the_edge_target_reads_the_cloud_vm_inventory_as_its_own(stacks, tmp_path):
    from triptyque.edge.bundle import PartSpec
    from triptyque.edge.inventory import parts_needed, read_inventory

    path = tmp_path / "inventory.yml"
    path.write_text(stacks["cloud-vm"].outputs["inventory"])
    tool = Path(sys.executable).with_name("ansible-inventory")
    nodes = read_inventory(path, 8080, ansible_inventory=str(tool))
    assert [n.name for n in nodes] == ["triptyque-llm-gpu-0"]
    assert nodes[0].gateway_url == f"http://{nodes[0].address}:8080"
    # Whatever the controller runs, the bundle gets a part for the image's Ubuntu 24.04 / Python 3.12.
    assert parts_needed(nodes, "gpu", controller=("debian-12-amd64", "3.11")) == (
        PartSpec("ubuntu-24.04-amd64", "3.12", "gpu"),)


def test_pulumi_waits_for_the_engine_as_long_as_its_startup_budget_allows(stacks, test_spec):
    # pulumi-kubernetes' await for a Deployment gives up after 10 minutes unless customTimeouts
    # say otherwise (https://www.pulumi.com/docs/iac/concepts/options/customtimeouts/), and
    # Kubernetes marks a rollout failed after progressDeadlineSeconds, 600 by default
    # (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#progress-deadline-seconds).
    from triptyque.spec import load_spec

    config = example("cloud", test_spec)
    budget = load_spec(test_spec, "cloud").engine.startup_seconds
    assert budget == 1800 and config.engine.startup_seconds is None  # the spec's, per target
    for name in ("onprem", "cloud"):
        engine = stacks[name].one("kubernetes:apps/v1:Deployment", "triptyque-llm-engine")
        deadline = int(engine.props["spec"]["progressDeadlineSeconds"])
        assert deadline > budget + config.engine.drain_seconds
        waits = stacks[name].timeouts[engine.urn]
        assert waits["create"] == waits["update"] == f"{deadline + 120}s"
        gateway = stacks[name].one("kubernetes:apps/v1:Deployment", "triptyque-llm-gateway")
        assert gateway.urn not in stacks[name].timeouts


def test_a_longer_startup_budget_lengthens_the_deadline_and_pulumi_s_wait(test_spec):
    config = example("onprem", test_spec)
    slow = run_stack(config.model_copy(update={"engine": config.engine.model_copy(update={"startup_seconds": 7200})}))
    engine = slow.one("kubernetes:apps/v1:Deployment", "triptyque-llm-engine")
    deadline = int(engine.props["spec"]["progressDeadlineSeconds"])
    assert deadline >= 7200 + 900
    assert slow.timeouts[engine.urn]["create"] == f"{deadline + 120}s"


def test_the_cloud_stack_installs_kube_prometheus_stack_without_control_plane_monitors(stacks):
    # A managed Kapsule control plane exposes no etcd/scheduler/controller-manager metrics
    # (kube-prometheus-stack values.yaml enables their monitors by default; see tests/k8s).
    cloud = stacks["cloud"].one("kubernetes:helm.sh/v3:Release", "kube-prometheus-stack").props["values"]
    onprem = stacks["onprem"].one("kubernetes:helm.sh/v3:Release", "kube-prometheus-stack").props["values"]
    assert cloud["kubeEtcd"] == {"enabled": False} and cloud["kubeScheduler"] == {"enabled": False}
    assert "kubeEtcd" not in onprem



def test_kapsule_s_api_server_answers_only_the_operators_and_the_nodes_have_no_public_address(stacks, test_spec):
    # pulumiverse_scaleway: kubernetes.Acl (one per cluster; without one the API server is open
    # to any address) and Pool.public_ip_disabled ("your Cluster must have an attached Private
    # Network set up with a Public Gateway"), per the SDK's docstrings (pulumiverse_scaleway 1.60).
    cloud = stacks["cloud"]
    acl = cloud.one("scaleway:kubernetes/acl:Acl", "kapsule-api-acl").props
    rules = {rule["ip"]: rule["description"] for rule in acl["aclRules"]}
    assert rules == {"203.0.113.10/32": "operators", "51.158.0.7/32": "the nodes, through the public gateway"}
    assert acl["clusterId"] == "kapsule-id"
    for pool in ("kapsule-system", "kapsule-gpu"):
        assert cloud.one("scaleway:kubernetes/pool:Pool", pool).props["publicIpDisabled"] is True
    route = cloud.one("scaleway:network/gatewayNetwork:GatewayNetwork", "kapsule-egress-route").props
    assert route["enableMasquerade"] is True and route["ipamConfigs"] == [{"pushDefaultRoute": True}]
    config = example("cloud", test_spec)
    open_api = config.model_copy(update={"scaleway": config.scaleway_or_default.model_copy(
        update={"api_source_ranges": None})})
    with pytest.raises(pulumi.RunError, match="apiSourceRanges"):
        run_stack(open_api)


def test_pulumi_creates_the_engine_with_the_stack_s_replicas_then_leaves_them_to_the_kill_switch(test_spec):
    # ignoreChanges: the property is set on create and never diffed after
    # (https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/), so a hard kill's 0 stays.
    from tests.stacks.conftest import IGNORED

    config = example("cloud", test_spec)
    ran = run_stack(config.model_copy(update={"engine": config.engine.model_copy(update={"replicas": 2})}))
    engine = ran.one("kubernetes:apps/v1:Deployment", "triptyque-llm-engine")
    assert engine.props["spec"]["replicas"] == 2
    assert IGNORED[engine.urn] == ["spec.replicas"]
    gateway = ran.one("kubernetes:apps/v1:Deployment", "triptyque-llm-gateway")
    assert gateway.urn not in IGNORED
