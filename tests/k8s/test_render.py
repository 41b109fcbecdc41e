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
    return one(objects, "Deployment", name)["spec"]["template"]["spec"]


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
    assert onprem["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
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
    container = pod(rendered["cloud"], "triptyque-llm-engine")["containers"][0]
    args = container["args"]
    assert container["command"] == ["python3"]
    assert args[:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/models/tiny-model"]
    assert args[args.index("--served-model-name") + 1] == "tiny-llama"
    assert args[args.index("--port") + 1] == "8000"


def test_a_local_model_folder_travels_in_an_immutable_configmap_named_after_its_content(rendered):
    maps = [o for o in rendered["onprem"] if o["kind"] == "ConfigMap"
            and o["metadata"]["name"].startswith("triptyque-llm-model-files-")]
    assert len(maps) == 1 and maps[0]["immutable"] is True
    assert json.loads(maps[0]["data"]["config.json"])["num_hidden_layers"] == 2
    volumes = pod(rendered["onprem"], "triptyque-llm-engine")["volumes"]
    assert {"name": "model", "configMap": {"name": maps[0]["metadata"]["name"]}} in volumes


def test_a_hub_model_is_downloaded_into_the_cache_at_its_pinned_revision(tmp_path):
    path = write_spec(tmp_path, model__source="Qwen/Qwen2.5-0.5B-Instruct", model__revision="a" * 40)
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


def test_the_gateways_may_touch_only_the_kill_switch_configmap(rendered):
    objects = rendered["onprem"]
    role = one(objects, "Role", "triptyque-llm-gateway")
    assert role["rules"] == [{
        "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["triptyque-llm-killswitch"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    }]
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
    assert namespaces == ["monitoring", "ingress-nginx"]


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
    for name, job in (("triptyque-llm-gateway", JOB_GATEWAY), ("triptyque-llm-engine", JOB_ENGINE)):
        monitor = one(rendered["cloud"], "ServiceMonitor", name)
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
        assert {"targetLabel": "job", "replacement": job, "action": "replace"} in endpoint["relabelings"]


def test_rendering_refuses_a_spec_without_images_or_with_the_placeholder_digest(tmp_path):
    base = load_stack_config(Path(__file__).resolve().parents[2], "onprem")
    without = write_spec(tmp_path / "a")
    raw = yaml.safe_load(without.read_text())
    del raw["images"]
    without.write_text(yaml.safe_dump(raw))
    config = base.model_copy(update={"spec": without})
    with pytest.raises(TargetError, match=re.escape("need images.engine and images.gateway")):
        render(spec_for(config), config)
    shipped = base.model_copy(update={"spec": Path(__file__).resolve().parents[2] / "serving/service.yaml"})
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
