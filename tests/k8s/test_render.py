"""The pure renderer: what the Kubernetes objects promise, target by target."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import ENGINE_IMAGE, GATEWAY_IMAGE, spec_for, stack, write_spec
from tests.support import ROOT as REPO
from triptyque.errors import TargetError
from triptyque.k8s.config import GPU_POOL_LABEL, load_stack_config, parse_stack_config
from triptyque.k8s.render import render, write_manifests
from triptyque.monitoring.config import JOB_ENGINE, JOB_GATEWAY
from triptyque.monitoring.rules import rule_groups

Objects = list[dict[str, Any]]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod(objects: Objects, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def test_the_namespace_comes_first_and_enforces_the_restricted_pod_security_standard(rendered):
    for objects in rendered.values():
        first = objects[0]
        assert first["kind"] == "Namespace"
        assert first["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert all(o["metadata"].get("namespace") == "triptyque" for o in objects[1:])


def test_the_engine_asks_for_exactly_the_gpus_it_is_limited_to(rendered):
    for objects in rendered.values():
        resources = pod(objects, "triptyque-llm-engine")["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]
        assert resources["limits"]["nvidia.com/gpu"] == "1"


def test_the_engine_lands_on_gpu_nodes_of_each_target(rendered):
    onprem = pod(rendered["onprem"], "triptyque-llm-engine")
    cloud = pod(rendered["cloud"], "triptyque-llm-engine")
    # On-prem, the GPU the spec names, as NVIDIA's GPU feature discovery labels the node
    # (nvidia.com/gpu.product, e.g. NVIDIA-L4: github.com/NVIDIA/k8s-device-plugin, docs/gpu-feature-discovery).
    assert onprem["nodeSelector"] == {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-L4"}
    assert cloud["nodeSelector"] == {GPU_POOL_LABEL: "gpu"}
    for spec in (onprem, cloud):
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_the_engine_waits_long_enough_for_model_loading_and_drains_on_shutdown(rendered):
    spec = pod(rendered["onprem"], "triptyque-llm-engine")
    container = spec["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    assert spec["terminationGracePeriodSeconds"] == 10 + 120


def test_the_engine_keeps_its_caches_on_a_persistent_volume_and_restarts_in_place(rendered):
    objects = rendered["onprem"]
    claim = one(objects, "PersistentVolumeClaim", "triptyque-llm-model-cache")
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    deployment = one(objects, "Deployment", "triptyque-llm-engine")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_HOME"].startswith("/cache/") and env["VLLM_CACHE_ROOT"].startswith("/cache/")
    assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"]


def test_every_container_is_hardened_and_pinned_by_digest(rendered):
    for objects in rendered.values():
        for name, image in (("triptyque-llm-engine", ENGINE_IMAGE), ("triptyque-llm-gateway", GATEWAY_IMAGE)):
            spec = pod(objects, name)
            assert spec["securityContext"]["runAsNonRoot"] is True
            container = spec["containers"][0]
            assert container["image"] == image
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_engine_serves_the_spec_model_under_its_served_name(rendered, spec_file):
    for target, objects in rendered.items():
        spec = spec_for(stack(target, spec_file))
        container = pod(objects, "triptyque-llm-engine")["containers"][0]
        args = container["args"]
        assert container["command"] == ["python3"]
        assert args[:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model", spec.model.source]
        assert args[args.index("--served-model-name") + 1] == spec.model.served_name
        assert args[args.index("--port") + 1] == "8000"


def _local_weights(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    (folder / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}\xff\xfe")
    return folder


def test_a_local_model_folder_travels_in_an_immutable_configmap_named_after_its_content(tmp_path):
    weights = _local_weights(tmp_path / "small-model")
    path = write_spec(tmp_path / "spec", targets__onprem__model__source=str(weights))
    config = stack("onprem", path)
    objects = render(spec_for(config), config)
    maps = [o for o in objects if o["kind"] == "ConfigMap"
            and o["metadata"]["name"].startswith("triptyque-llm-model-files-")]
    assert len(maps) == 1 and maps[0]["immutable"] is True
    assert json.loads(maps[0]["data"]["config.json"])["num_hidden_layers"] == 2
    assert "model.safetensors" in maps[0]["binaryData"]
    volumes = pod(objects, "triptyque-llm-engine")["volumes"]
    assert {"name": "model", "configMap": {"name": maps[0]["metadata"]["name"]}} in volumes


def test_a_hub_model_is_downloaded_into_the_cache_at_its_pinned_revision(tmp_path):
    path = write_spec(tmp_path, targets__onprem__model__source="Qwen/Qwen2.5-0.5B-Instruct",
                      targets__onprem__model__revision="a" * 40)
    config = stack("onprem", path)
    objects = render(spec_for(config), config)
    args = pod(objects, "triptyque-llm-engine")["containers"][0]["args"]
    pairs = dict(zip(args[2::2], args[3::2], strict=False))
    assert pairs["--model"] == "Qwen/Qwen2.5-0.5B-Instruct" and pairs["--revision"] == "a" * 40
    assert not [o for o in objects if o["metadata"]["name"].startswith("triptyque-llm-model-files")]


def test_the_gateways_run_several_replicas_behind_a_disruption_budget(rendered):
    objects = rendered["onprem"]
    gateway = one(objects, "Deployment", "triptyque-llm-gateway")
    assert gateway["spec"]["replicas"] == 3
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = one(objects, "PodDisruptionBudget", "triptyque-llm-gateway")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]


def test_a_killed_gateway_stays_in_the_service_to_answer_and_to_be_resumed(rendered):
    container = pod(rendered["onprem"], "triptyque-llm-gateway")["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"][:3] == ["python", "-m", "triptyque.gateway"]


def test_the_gateway_settings_share_one_cluster_kill_switch_and_require_keys(rendered):
    settings_map = one(rendered["cloud"], "ConfigMap", "triptyque-llm-gateway-settings")
    settings = json.loads(settings_map["data"]["settings.json"])
    assert settings["state_backend"] == "kubernetes"
    assert settings["cluster"] == {"namespace": "triptyque", "configmap": "triptyque-llm-killswitch"}
    assert settings["upstream_url"] == "http://triptyque-llm-engine.triptyque.svc:8000"
    assert settings["host"] == "0.0.0.0" and settings["port"] == 8080
    # the spec's key and the stack file's example key, hashes only
    assert set(settings["api_keys"]) == {"app", "example-app"}
    assert settings["kill_switch"]["enabled"] is True
    template = one(rendered["cloud"], "Deployment", "triptyque-llm-gateway")["spec"]["template"]
    digest = hashlib.sha256(settings_map["data"]["settings.json"].encode()).hexdigest()
    assert template["metadata"]["annotations"]["triptyque.io/settings-sha256"] == digest


def test_the_gateways_may_change_only_the_kill_switch_configmap(rendered):
    objects = rendered["onprem"]
    role = one(objects, "Role", "triptyque-llm-gateway")
    assert role["rules"][0] == {
        "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["triptyque-llm-killswitch"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    }
    # Besides: read back their audit archives by name, and create them (tests/k8s/test_audit_archive.py).
    assert [rule["verbs"] for rule in role["rules"][1:]] == [["get"], ["create"]]
    binding = one(objects, "RoleBinding", "triptyque-llm-gateway")
    assert binding["subjects"][0]["name"] == pod(objects, "triptyque-llm-gateway")["serviceAccountName"]
    assert pod(objects, "triptyque-llm-engine")["automountServiceAccountToken"] is False


def test_the_kill_switch_configmap_is_rendered_without_data_so_no_apply_resets_a_kill(rendered):
    killswitch = one(rendered["onprem"], "ConfigMap", "triptyque-llm-killswitch")
    assert "data" not in killswitch and "binaryData" not in killswitch


def test_only_the_gateways_and_prometheus_reach_the_engine(rendered):
    objects = rendered["onprem"]
    deny = one(objects, "NetworkPolicy", "triptyque-llm-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    engine = one(objects, "NetworkPolicy", "triptyque-llm-engine")["spec"]
    peers = engine["ingress"][0]["from"]
    assert peers[0] == {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "triptyque-llm", "app.kubernetes.io/component": "gateway"}}}
    assert peers[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert len(peers) == 2


def test_the_onprem_ingress_has_tls_and_a_source_allowlist(rendered):
    ingress = one(rendered["onprem"], "Ingress", "triptyque-llm-gateway")
    assert ingress["spec"]["tls"] == [{"hosts": ["llm.example.internal"], "secretName": "triptyque-llm-tls"}]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/whitelist-source-range"] == "10.0.0.0/8"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    gateway_policy = one(rendered["onprem"], "NetworkPolicy", "triptyque-llm-gateway")
    namespaces = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for p in gateway_policy["spec"]["ingress"][0]["from"]]
    assert namespaces == ["ingress-nginx"]  # Prometheus: on the metrics port only (below)


def test_the_cloud_load_balancer_only_lets_in_its_source_ranges(rendered):
    service = one(rendered["cloud"], "Service", "triptyque-llm-gateway")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    engine = one(rendered["cloud"], "Service", "triptyque-llm-engine")
    assert engine["spec"]["type"] == "ClusterIP"


def test_the_prometheus_rule_is_monitoring_s_rule_groups_unchanged(rendered, spec_file):
    for target, objects in rendered.items():
        rule = one(objects, "PrometheusRule", "triptyque-llm")
        expected = rule_groups(spec_for(stack(target, spec_file)), target)
        assert rule["spec"]["groups"] == expected
        assert len(expected) > 3


def test_service_monitors_relabel_to_the_job_names_the_rules_select(rendered):
    for name, job, port in (("triptyque-llm-gateway", JOB_GATEWAY, "metrics"),
                            ("triptyque-llm-engine", JOB_ENGINE, "http")):
        monitor = one(rendered["cloud"], "ServiceMonitor", name)
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["path"] == "/metrics" and endpoint["port"] == port
        assert {"targetLabel": "job", "replacement": job, "action": "replace"} in endpoint["relabelings"]


def test_rendering_refuses_a_spec_without_images_or_with_the_placeholder_digest(tmp_path):
    base = load_stack_config(REPO, "onprem")
    without = write_spec(tmp_path / "a")
    raw = yaml.safe_load(without.read_text())
    del raw["images"]
    without.write_text(yaml.safe_dump(raw))
    config = base.model_copy(update={"spec": without})
    with pytest.raises(TargetError, match=re.escape("need images.engine and images.gateway")):
        render(spec_for(config), config)
    shipped = base.model_copy(update={"spec": REPO / "serving/service.yaml"})
    with pytest.raises(TargetError, match=re.escape("images.engine: the digest is the zero placeholder")):
        render(spec_for(shipped), shipped)


def test_rendering_refuses_an_engine_image_of_another_version(tmp_path):
    path = write_spec(tmp_path, images__engine="vllm/vllm-openai:v0.31.0@sha256:" + "3" * 64)
    config = stack("onprem", path)
    with pytest.raises(TargetError, match=re.escape("tagged v0.31.0 but engine.version is 0.32.0")):
        render(spec_for(config), config)


def test_rendering_refuses_a_gateway_without_keys_or_without_a_kill_switch(tmp_path):
    path = write_spec(tmp_path / "nokeys", gateway__api_keys={})
    config = stack("onprem", path, api_keys={})
    with pytest.raises(TargetError, match="needs at least one API key hash"):
        render(spec_for(config), config)
    path = write_spec(tmp_path / "nokill", kill_switch__enabled=False)
    config = stack("onprem", path)
    with pytest.raises(TargetError, match="cannot be stopped"):
        render(spec_for(config), config)


def test_stack_config_keeps_cloud_regions_in_the_eu_and_load_balancers_behind_an_allowlist():
    with pytest.raises(TargetError, match="region us-east is outside the EU"):
        parse_stack_config({"target": "cloud", "scaleway": {"region": "us-east"}}, "Pulumi.cloud.yaml")
    with pytest.raises(TargetError, match="zone nl-ams-1 is not in region fr-par"):
        parse_stack_config({"target": "cloud", "scaleway": {"zone": "nl-ams-1"}}, "Pulumi.cloud.yaml")
    with pytest.raises(TargetError, match=re.escape("0.0.0.0/0 lets the whole internet in")):
        parse_stack_config({"target": "cloud", "exposure": {"loadBalancer": {"sourceRanges": ["0.0.0.0/0"]}}},
                           "Pulumi.cloud.yaml")
    defaults = parse_stack_config({"target": "cloud"}, "Pulumi.cloud.yaml").scaleway_or_default
    assert (defaults.region, defaults.zone) == ("fr-par", "fr-par-2")


def test_render_writes_one_numbered_yaml_file_per_object_and_drops_stale_ones(rendered, tmp_path):
    (tmp_path / "99-stale-object.yaml").write_text("kind: Old\n")
    paths = write_manifests(rendered["onprem"], tmp_path)
    assert [p.name for p in sorted(tmp_path.glob("*.yaml"))] == [p.name for p in paths]
    assert paths[0].name == "01-namespace-triptyque.yaml"
    assert yaml.safe_load(paths[-1].read_text())["kind"] == "PrometheusRule"
    assert [yaml.safe_load(p.read_text()) for p in paths] == rendered["onprem"]


def test_a_service_name_too_long_for_kubernetes_is_refused_before_rendering(tmp_path):
    config = stack("onprem", write_spec(tmp_path, name="a" * 50))
    with pytest.raises(TargetError, match="too long for Kubernetes object names; use at most 46"):
        render(spec_for(config), config)


# ---- issue 14: what a real cluster would hit ------------------------------------------------
# Scaleway's cloud-controller-manager, read at github.com/scaleway/scaleway-cloud-controller-manager
# (commit bddc17f83b3e7bd8432ba01a05e83f141f99f95a):
# - scaleway/loadbalancers.go, updateLoadBalancer: with a private network (PN_ID, set on Kapsule)
#   the load balancer is attached to it and its backends are the nodes' *internal* addresses;
#   it forwards TCP as a proxy, so a pod sees the balancer's private address, not the client's.
# - scaleway/acl.go, makeACLSpecs: loadBalancerSourceRanges become ACLs allowing those ranges
#   (and the nodes) and ending in "lb-source-range-end", deny 0.0.0.0/0 and ::/0.
# - docs/loadbalancer-annotations.md: scw-loadbalancer-timeout-server defaults to 10s,
#   timeout-client and timeout-tunnel to 10m (Go durations).
SCW_CCM = "scaleway/scaleway-cloud-controller-manager@bddc17f8"


def _gateway_peers(objects: Objects) -> list[dict[str, Any]]:
    policy = one(objects, "NetworkPolicy", "triptyque-llm-gateway")
    peers: list[dict[str, Any]] = policy["spec"]["ingress"][0]["from"]
    return peers


def test_the_kapsule_gateway_policy_admits_the_load_balancer_s_subnet_not_the_client_ranges(rendered):
    # The proxy's connections come from the cluster's private network (SCW_CCM, loadbalancers.go).
    blocks = [p["ipBlock"]["cidr"] for p in _gateway_peers(rendered["cloud"]) if "ipBlock" in p]
    assert blocks == ["172.16.32.0/22"]
    assert "203.0.113.0/24" not in blocks
    # ... and the client allowlist is still enforced, by the balancer's ACLs (SCW_CCM, acl.go).
    service = one(rendered["cloud"], "Service", "triptyque-llm-gateway")
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_the_kapsule_policy_follows_the_private_network_the_stack_creates(spec_file):
    base = stack("cloud", spec_file)
    config = base.model_copy(update={"scaleway": base.scaleway_or_default.model_copy(
        update={"private_network_subnet": "10.20.0.0/20"})})
    blocks = [p["ipBlock"]["cidr"] for p in _gateway_peers(render(spec_for(config), config)) if "ipBlock" in p]
    assert blocks == ["10.20.0.0/20"]


def test_an_onprem_load_balancer_that_keeps_client_addresses_admits_the_client_ranges(spec_file):
    config = parse_stack_config({
        "target": "onprem", "kubeContext": "lab", "spec": str(spec_file),
        "exposure": {"loadBalancer": {"sourceRanges": ["10.1.0.0/16"]}},
    }, "Pulumi.onprem.yaml")
    objects = render(spec_for(config), config)
    assert {"ipBlock": {"cidr": "10.1.0.0/16"}} in _gateway_peers(objects)
    annotations = one(objects, "Service", "triptyque-llm-gateway")["metadata"].get("annotations", {})
    assert not [k for k in annotations if "scw-loadbalancer" in k]


def test_an_onprem_proxying_load_balancer_admits_its_declared_proxy_ranges(spec_file):
    config = parse_stack_config({
        "target": "onprem", "kubeContext": "lab", "spec": str(spec_file),
        "exposure": {"loadBalancer": {"sourceRanges": ["10.1.0.0/16"], "proxyRanges": ["192.168.7.0/28"]}},
    }, "Pulumi.onprem.yaml")
    blocks = [p["ipBlock"]["cidr"] for p in _gateway_peers(render(spec_for(config), config)) if "ipBlock" in p]
    assert blocks == ["192.168.7.0/28"]


def test_the_scaleway_load_balancer_outwaits_the_gateway_s_own_timeouts(rendered, spec_file):
    # Defaults (SCW_CCM, docs/loadbalancer-annotations.md): server 10s, which would cut a
    # request the gateway still waits on for up to first_byte_timeout_seconds.
    limits = spec_for(stack("cloud", spec_file)).gateway.limits
    annotations = one(rendered["cloud"], "Service", "triptyque-llm-gateway")["metadata"]["annotations"]
    longest = max(limits.first_byte_timeout_seconds, limits.idle_timeout_seconds)
    for kind in ("server", "client", "tunnel"):
        value = annotations[f"service.beta.kubernetes.io/scw-loadbalancer-timeout-{kind}"]
        assert re.fullmatch(r"\d+s", value), value  # a Go duration, as the CCM parses it
        assert int(value[:-1]) > longest


def test_the_load_balancer_timeouts_follow_the_spec_and_the_stack_file_still_wins(tmp_path):
    path = write_spec(tmp_path, gateway__limits__first_byte_timeout_seconds=300.0)
    config = stack("cloud", path)
    annotations = one(render(spec_for(config), config), "Service", "triptyque-llm-gateway")["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/scw-loadbalancer-timeout-server"] == "305s"
    balancer = config.exposure.load_balancer
    assert balancer is not None
    pinned = config.model_copy(update={"exposure": config.exposure.model_copy(update={
        "load_balancer": balancer.model_copy(update={"annotations": {
            "service.beta.kubernetes.io/scw-loadbalancer-timeout-server": "20m"}})})})
    annotations = one(render(spec_for(pinned), pinned), "Service", "triptyque-llm-gateway")["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/scw-loadbalancer-timeout-server"] == "20m"


def test_each_gpu_target_serves_real_weights_in_their_own_dtype_at_a_real_context_length(rendered):
    # The shipped profile (tiny config, --load-format dummy, float32, 256 tokens) is the CPU one.
    for objects in rendered.values():
        args = pod(objects, "triptyque-llm-engine")["containers"][0]["args"]
        pairs = dict(zip(args[2::2], args[3::2], strict=False))
        assert pairs["--load-format"] == "auto"
        assert pairs["--dtype"] == "auto"
        assert int(pairs["--max-model-len"]) >= 4096
        assert re.fullmatch(r"[0-9a-f]{40}", pairs["--revision"])  # a pinned commit, not a branch
        assert not [o for o in objects if o["metadata"]["name"].startswith("triptyque-llm-model-files")]


@pytest.mark.parametrize("target", ["onprem", "cloud"])
def test_validation_refuses_a_weightless_model_where_there_are_gpus(tmp_path, target):
    from triptyque.errors import SpecError
    from triptyque.spec import load_spec

    dummy = write_spec(tmp_path / "dummy", **{f"targets__{target}__engine__load_format": "dummy"})
    with pytest.raises(SpecError, match="load_format dummy serves random weights"):
        load_spec(dummy, target)
    config_only = write_spec(tmp_path / "config-only", **{
        f"targets__{target}__model__source": str(REPO / "serving" / "tiny-model")})
    with pytest.raises(SpecError, match="holds no weights"):
        load_spec(config_only, target)
    # The CPU targets keep their weightless tiny model.
    assert load_spec(dummy, "local").engine.load_format == "dummy"


def test_the_engine_rollout_deadline_outlasts_its_startup_budget(rendered, spec_file):
    for target, objects in rendered.items():
        config = stack(target, spec_file)
        engine = one(objects, "Deployment", "triptyque-llm-engine")["spec"]
        startup = engine["template"]["spec"]["containers"][0]["startupProbe"]
        probe_budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert probe_budget >= spec_for(config).engine.startup_seconds
        # Kubernetes' default (600 s) would fail a rollout the startup probe still allows.
        assert engine["progressDeadlineSeconds"] > probe_budget + config.engine.drain_seconds
        assert engine["progressDeadlineSeconds"] > 600


# kube-prometheus-stack, read at github.com/prometheus-community/helm-charts (commit cf408a29,
# chart 88.5.3; the pin in charts/ could not be pulled offline): values.yaml gives node-exporter
# the job "node-exporter" (prometheus-node-exporter.podLabels/service.labels jobLabel) and
# templates/prometheus/rules-1.14/node-exporter.yaml selects node_filesystem_*{job="node-exporter"};
# kubeEtcd, kubeScheduler, kubeControllerManager and kubeProxy are enabled by default.
def test_the_chart_s_node_exporter_keeps_its_job_name(rendered):
    from triptyque.k8s.charts import load_chart

    for target in ("onprem", "cloud"):
        values = load_chart(REPO / "charts", "kube-prometheus-stack", target).values
        monitor = values.get("prometheus-node-exporter", {}).get("prometheus", {}).get("monitor", {})
        assert not [r for r in monitor.get("relabelings", []) if r.get("targetLabel") == "job"]


def test_triptyque_s_rules_read_node_metrics_through_their_own_monitor_of_the_chart_s_exporter(
        rendered, spec_file):
    from triptyque.k8s.monitoring import NODE_METRICS_KEPT
    from triptyque.monitoring.config import JOB_NODE

    for target, objects in rendered.items():
        monitor = one(objects, "ServiceMonitor", "triptyque-llm-node")["spec"]
        assert monitor["selector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus-node-exporter"}
        assert monitor["namespaceSelector"] == {"matchNames": ["monitoring"]}
        endpoint = monitor["endpoints"][0]
        assert endpoint["port"] == "http-metrics"
        assert {"targetLabel": "job", "replacement": JOB_NODE, "action": "replace"} in endpoint["relabelings"]
        # Every node metric the rules and dashboards read is among those kept.
        groups = rule_groups(spec_for(stack(target, spec_file)), target)
        used = set(re.findall(r"\bnode_[a-z_]+(?=\{)", json.dumps(groups)))
        for dashboard in (REPO / "monitoring" / "dashboards").glob("*.json"):
            used |= set(re.findall(r"\bnode_[a-z_]+(?=\{)", dashboard.read_text()))
        assert used, "the rules read no node metric?"
        assert all(re.fullmatch(NODE_METRICS_KEPT, name) for name in used), used


def test_a_managed_kapsule_control_plane_is_not_scraped_and_onprem_s_still_is():
    from triptyque.k8s.charts import load_chart

    cloud = load_chart(REPO / "charts", "kube-prometheus-stack", "cloud")
    for monitor in ("kubeEtcd", "kubeScheduler", "kubeControllerManager", "kubeProxy"):
        assert cloud.values[monitor]["enabled"] is False, monitor
    assert not any(cloud.values["defaultRules"]["rules"].values())
    assert "--values charts/kube-prometheus-stack/values-cloud.yaml" in cloud.helm_command()
    onprem = load_chart(REPO / "charts", "kube-prometheus-stack", "onprem")
    assert "kubeEtcd" not in onprem.values and "values-cloud" not in onprem.helm_command()


def test_gpu_metrics_reach_the_rules_as_job_dcgm_on_kapsule(rendered):
    from triptyque.monitoring.config import JOB_GPU

    monitor = one(rendered["cloud"], "ServiceMonitor", "triptyque-llm-dcgm")["spec"]
    # NVIDIA/gpu-operator assets/state-dcgm-exporter/0600_service.yaml: app=nvidia-dcgm-exporter, port gpu-metrics
    assert monitor["selector"]["matchLabels"] == {"app": "nvidia-dcgm-exporter"}
    assert monitor["endpoints"][0]["port"] == "gpu-metrics"
    assert {"targetLabel": "job", "replacement": JOB_GPU, "action": "replace"} in monitor["endpoints"][0]["relabelings"]
    # onprem installs charts/gpu-operator, whose own ServiceMonitor is relabelled to dcgm.
    assert not [o for o in rendered["onprem"] if o["metadata"]["name"] == "triptyque-llm-dcgm"]


def test_a_gitops_sync_never_undoes_a_hard_kill_because_no_manifest_sets_the_engine_s_replicas(
        rendered, tmp_path, spec_file):
    # Argo CD: "remove spec.replicas from the manifest" when something else scales a Deployment
    # (https://argo-cd.readthedocs.io/en/stable/user-guide/best_practices/#leaving-room-for-imperativeness);
    # Flux's kustomize-controller applies server-side, where a field left out is not owned
    # (https://fluxcd.io/flux/components/kustomize/kustomizations/#server-side-apply).
    for objects in rendered.values():
        assert "replicas" not in one(objects, "Deployment", "triptyque-llm-engine")["spec"]
        assert one(objects, "Deployment", "triptyque-llm-gateway")["spec"]["replicas"] == 3
    from triptyque.k8s.render import render_target

    written = render_target("onprem", spec_for(stack("onprem", spec_file)), tmp_path, REPO)
    assert "never undoes a hard kill" in written[-1].read_text()


def test_grafana_on_kubernetes_is_provisioned_with_triptyque_s_dashboards(rendered, spec_file):
    # kube-prometheus-stack values (prometheus-community/helm-charts@cf408a29): the Grafana
    # sidecar loads ConfigMaps labelled grafana_dashboard="1" from every namespace.
    from triptyque.monitoring.dashboards import dashboards

    for target, objects in rendered.items():
        maps = [o for o in objects if o["kind"] == "ConfigMap"
                and o["metadata"]["labels"].get("grafana_dashboard") == "1"]
        expected = dashboards(spec_for(stack(target, spec_file)))
        loaded = {key: json.loads(text) for m in maps for key, text in m["data"].items()}
        assert loaded == {f"{name}.json": board for name, board in expected.items()}
        assert all(len(json.dumps(m["data"])) < 900 * 1024 for m in maps)  # a ConfigMap holds 1 MiB


def test_every_chart_pin_says_whether_it_was_checked_upstream():
    from triptyque.k8s.charts import chart_names, load_chart

    charts = {name: load_chart(REPO / "charts", name) for name in chart_names(REPO / "charts")}
    assert set(charts) == {"gpu-operator", "kube-prometheus-stack", "prometheus-operator-crds"}
    # Read in prometheus-community/helm-charts: both tags exist and run the same operator.
    assert "kube-prometheus-stack-87.14.0" in charts["kube-prometheus-stack"].verified
    assert "prometheus-operator-crds-30.0.1" in charts["prometheus-operator-crds"].verified
    assert charts["gpu-operator"].verified == ""  # NVIDIA's repository could not be read offline


def test_the_pin_check_reads_each_repository_s_index(tmp_path):
    from triptyque.k8s.charts import check_pins

    indexes = {
        "https://prometheus-community.github.io/helm-charts/index.yaml": yaml.safe_dump({"entries": {
            "kube-prometheus-stack": [{"version": "87.14.0"}],
            "prometheus-operator-crds": [{"version": "31.0.1"}]}}).encode(),
    }

    def fetch(url: str) -> bytes:
        if url not in indexes:
            raise OSError("no network")
        return indexes[url]

    lines = check_pins(REPO / "charts", fetch)
    assert lines[0].startswith("UNREACHABLE gpu-operator: https://helm.ngc.nvidia.com/nvidia/index.yaml")
    assert lines[1] == "ok kube-prometheus-stack: kube-prometheus-stack 87.14.0 in https://prometheus-community.github.io/helm-charts"
    assert lines[2].startswith("MISSING prometheus-operator-crds: prometheus-operator-crds 30.0.1")


def test_plain_http_is_refused_towards_public_networks_unless_the_stack_accepts_it():
    vm = {"sshPublicKey": "ssh-ed25519 AAAA ops", "sshSourceRanges": ["198.51.100.7/32"]}
    refused = re.escape("vms.gatewaySourceRanges serves plain HTTP to public networks (51.15.0.0/16)")
    with pytest.raises(TargetError, match=refused):
        parse_stack_config({"target": "cloud-vm", "vms": {**vm, "gatewaySourceRanges": ["51.15.0.0/16"]}}, "f")
    accepted = parse_stack_config({"target": "cloud-vm", "vms": {
        **vm, "gatewaySourceRanges": ["51.15.0.0/16"], "allowPlainHttp": True}}, "f")
    assert accepted.vms is not None and accepted.vms.allow_plain_http
    parse_stack_config({"target": "cloud-vm", "vms": {**vm, "gatewaySourceRanges": ["10.0.0.0/8"]}}, "f")
    with pytest.raises(TargetError, match=re.escape("exposure.loadBalancer serves plain HTTP")):
        parse_stack_config({"target": "cloud", "exposure": {"loadBalancer": {"sourceRanges": ["51.15.0.0/16"]}}}, "f")
    tls = {"service.beta.kubernetes.io/scw-loadbalancer-certificate-ids": "fr-par/1111"}
    parse_stack_config({"target": "cloud", "exposure": {"loadBalancer": {
        "sourceRanges": ["51.15.0.0/16"], "annotations": tls}}}, "f")


def test_metrics_are_never_in_the_public_service_and_have_their_own_cluster_ip_service(rendered):
    for target, objects in rendered.items():
        public = one(objects, "Service", "triptyque-llm-gateway")
        assert [p["name"] for p in public["spec"]["ports"]] == ["http"], target
        metrics = one(objects, "Service", "triptyque-llm-gateway-metrics")
        assert metrics["spec"]["type"] == "ClusterIP"
        assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 9102, "targetPort": "metrics",
                                             "protocol": "TCP"}]
        gateway = pod(objects, "triptyque-llm-gateway")["containers"][0]
        settings = json.loads(one(objects, "ConfigMap", "triptyque-llm-gateway-settings")["data"]["settings.json"])
        assert settings["metrics_port"] == 9102
        assert {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in gateway["ports"]
        # The ServiceMonitor selects the metrics Service alone (the public one lacks its label).
        monitor = one(objects, "ServiceMonitor", "triptyque-llm-gateway")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= metrics["metadata"]["labels"].items()
        assert not selector.items() <= public["metadata"]["labels"].items()


def test_only_the_monitoring_namespace_reaches_the_gateways_metrics_port(rendered):
    # Each ingress rule admits its `from` peers on its `ports` only; an empty `from` would admit
    # every source (NetworkPolicyIngressRule, Kubernetes API reference networking/v1).
    for target, objects in rendered.items():
        policy = one(objects, "NetworkPolicy", "triptyque-llm-gateway")
        rules = policy["spec"]["ingress"]
        metrics_rules = [r for r in rules if {"protocol": "TCP", "port": "metrics"} in r["ports"]]
        assert len(metrics_rules) == 1, target
        (rule,) = metrics_rules
        assert rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]
        assert rule["from"] == [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }]
        api_rules = [r for r in rules if r is not rule]
        assert all(r["from"] and r["ports"] == [{"protocol": "TCP", "port": "http"}] for r in api_rules)
        assert all("monitoring" not in json.dumps(r["from"]) for r in api_rules)


def test_the_metrics_port_must_not_be_the_api_port(spec_file):
    config = stack("cloud", spec_file)
    clash = config.model_copy(update={"gateway": config.gateway.model_copy(update={"metrics_port": 8080})})
    with pytest.raises(TargetError, match=re.escape("triptyque:gateway.metricsPort is the API port (8080)")):
        render(spec_for(clash), clash)


def _engines(spec_file, replicas: int, **pool: Any) -> Objects:
    config = stack("cloud", spec_file)
    scaleway = config.scaleway_or_default
    config = config.model_copy(update={
        "engine": config.engine.model_copy(update={"replicas": replicas}),
        "scaleway": scaleway.model_copy(update={"gpu_pool": scaleway.gpu_pool.model_copy(update=pool)}),
    })
    return render(spec_for(config), config)


def test_the_engine_scales_to_what_the_gpu_pool_holds_at_its_maximum_and_no_further(spec_file):
    # The example pool: maxSize 2 of L4-1-24G (one GPU each), one GPU per engine: 2 engines.
    assert one(_engines(spec_file, 2), "Deployment", "triptyque-llm-engine")["metadata"]["annotations"][
        "triptyque.io/serving-replicas"] == "2"
    with pytest.raises(TargetError, match=re.escape(
            "triptyque:engine.replicas is 3 but the GPU pool holds at most 2 (maxSize 2 x 1 per node)")):
        _engines(spec_file, 3)
    # Two GPUs per node (Scaleway's <GPU>-<count>-<memory>G names): two engines a node.
    _engines(spec_file, 4, node_type="L4-2-24G")
    with pytest.raises(TargetError, match=re.escape("holds at most 4 (maxSize 2 x 2 per node)")):
        _engines(spec_file, 5, node_type="L4-2-24G")


def test_several_engines_each_get_their_own_read_write_once_cache(spec_file):
    # Scaleway's block storage (Kapsule's volumes) attaches to one node at a time: ReadWriteOnce
    # only, so replicas cannot share one claim. A generic ephemeral volume gives each pod its own
    # (https://kubernetes.io/docs/concepts/storage/ephemeral-volumes/#generic-ephemeral-volumes).
    objects = _engines(spec_file, 2)
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    deployment = one(objects, "Deployment", "triptyque-llm-engine")
    assert "replicas" not in deployment["spec"]  # the kill switch's, as with one engine
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    (cache,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "cache"]
    claim = cache["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"]
    # One engine keeps its named claim across restarts and hard kills.
    single = stack("cloud", spec_file)
    objects = render(spec_for(single), single)
    assert one(objects, "PersistentVolumeClaim", "triptyque-llm-model-cache")
    assert one(objects, "Deployment", "triptyque-llm-engine")["spec"]["strategy"] == {"type": "Recreate"}
