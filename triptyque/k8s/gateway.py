"""The gateways: several replicas sharing one kill switch kept in a ConfigMap."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from triptyque.errors import TargetError
from triptyque.gateway.settings import AUDIT_ARCHIVES, ClusterState, GatewaySettings, audit_archive_name
from triptyque.k8s.config import StackConfig
from triptyque.k8s.names import HTTP, LISTENER_LABEL, METRICS, SETTINGS_DIR, SETTINGS_FILE, Names
from triptyque.k8s.pods import (
    container_security,
    http_probe,
    pod_security,
    pre_stop_sleep,
)
from triptyque.spec import ServiceSpec

# Seconds a terminating gateway keeps answering while it leaves the Service's endpoints.
DEREGISTER_SECONDS = 5
# The gateway's own graceful shutdown (uvicorn's timeout_graceful_shutdown) plus a margin.
SHUTDOWN_SECONDS = 10


def gateway_settings(spec: ServiceSpec, config: StackConfig, names: Names) -> GatewaySettings:
    api_keys = {n: k.sha256 for n, k in spec.gateway.api_keys.items()} | config.api_keys
    admin_keys = {n: k.sha256 for n, k in spec.gateway.admin_keys.items()} | config.admin_keys
    if not api_keys or not admin_keys:
        missing = "API" if not api_keys else "admin"
        raise TargetError(
            f"the {config.target} target needs at least one {missing} key hash: add it to the "
            f"spec (gateway.{missing.lower()}_keys) or to triptyque:{missing.lower()}Keys in "
            f"Pulumi.{config.target}.yaml (`triptyque keys new NAME` prints one)"
        )
    if not spec.kill_switch.enabled:
        raise TargetError(
            "kill_switch.enabled is false; the Kubernetes targets refuse to deploy a gateway "
            "that cannot be stopped"
        )
    if config.gateway.metrics_port == spec.gateway.port:
        raise TargetError(
            f"triptyque:gateway.metricsPort is the API port ({spec.gateway.port}) in "
            f"Pulumi.{config.target}.yaml: choose another, /metrics must not be served to clients"
        )
    return GatewaySettings(
        host="0.0.0.0",
        port=spec.gateway.port,
        metrics_port=config.gateway.metrics_port,
        upstream_url=f"http://{names.engine}.{names.namespace}.svc:{spec.engine.port}",
        served_model=spec.model.served_name,
        api_keys=api_keys,
        admin_keys=admin_keys,
        limits=spec.gateway.limits,
        kill_switch=spec.kill_switch,
        state_backend="kubernetes",
        cluster=ClusterState(namespace=names.namespace, configmap=names.killswitch),
        target=config.target,
        spec_hash=spec.spec_hash(),
        log_json=True,
    )


def settings_json(settings: GatewaySettings) -> str:
    return json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def _rbac(names: Names) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": names.metadata(names.gateway, "gateway"),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": names.metadata(names.gateway, "gateway"),
            # That one ConfigMap and nothing else; list and watch are allowed by name because
            # the gateways always send a metadata.name field selector.
            "rules": [{
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [names.killswitch],
                "verbs": ["get", "list", "watch", "update", "patch"],
            }, {
                # The audit chain's archives (gateway.state_k8s): created once, immutable, read
                # back by name. RBAC cannot limit create by resource name (Kubernetes docs, "Using
                # RBAC Authorization": create requests cannot be restricted by resourceNames).
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [audit_archive_name(names.killswitch, number)
                                  for number in range(1, AUDIT_ARCHIVES + 1)],
                "verbs": ["get"],
            }, {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["create"],
            }],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": names.metadata(names.gateway, "gateway"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.gateway},
            "subjects": [{"kind": "ServiceAccount", "name": names.gateway, "namespace": names.namespace}],
        },
    ]


def killswitch_configmap(names: Names) -> dict[str, Any]:
    # No `data`: the gateways and `triptyque kill` own it. Applying this object again (Pulumi,
    # kubectl apply, a GitOps sync) never resets a kill, because no applier ever set a key.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": names.metadata(
            names.killswitch, "killswitch",
            annotations={"triptyque.io/owner": "written by the gateways; do not edit by hand"},
        ),
    }


def gateway_deployment(
    spec: ServiceSpec, config: StackConfig, names: Names, image: str, settings: str
) -> dict[str, Any]:
    resources = {
        "requests": config.gateway.requests.model_dump(),
        "limits": config.gateway.limits.model_dump(),
    }
    container: dict[str, Any] = {
        "name": "gateway",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "triptyque.gateway", "--settings", f"{SETTINGS_DIR}/{SETTINGS_FILE}"],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "ports": [{"name": HTTP, "containerPort": spec.gateway.port, "protocol": "TCP"},
                  {"name": METRICS, "containerPort": config.gateway.metrics_port, "protocol": "TCP"}],
        "resources": resources,
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "settings", "mountPath": SETTINGS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # Readiness is /healthz, not /readyz: a killed gateway must stay in the Service to
        # answer 503 with the operator's reason and to accept /admin/resume; /readyz is for
        # people and `triptyque status`.
        "readinessProbe": http_probe("/healthz", period=5, failures=2),
        "livenessProbe": http_probe("/healthz", period=10, failures=3),
        "lifecycle": pre_stop_sleep(DEREGISTER_SECONDS),
    }
    checksum = hashlib.sha256(settings.encode()).hexdigest()
    template_meta = {
        "labels": names.labels("gateway"),
        # New settings roll the gateways.
        "annotations": {"triptyque.io/settings-sha256": checksum},
    }
    pod = {
        "serviceAccountName": names.gateway,
        # The token is needed: the gateway reads and watches the kill-switch ConfigMap.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": DEREGISTER_SECONDS + SHUTDOWN_SECONDS,
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": names.selector("gateway")},
        }],
        "containers": [container],
        "volumes": [
            {"name": "settings", "configMap": {"name": names.gateway_settings}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": names.metadata(names.gateway, "gateway", annotations={
            "checkov.io/skip1": "CKV_K8S_38=The gateway needs its token: it reads and watches the "
            "kill-switch ConfigMap, the one object its Role allows.",
        }),
        "spec": {
            "replicas": config.gateway.replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": names.selector("gateway")},
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


# Scaleway's cloud-controller-manager reads these (docs/loadbalancer-annotations.md of
# scaleway/scaleway-cloud-controller-manager); its server timeout defaults to 10s.
SCW_TIMEOUTS = tuple(f"service.beta.kubernetes.io/scw-loadbalancer-timeout-{kind}"
                     for kind in ("server", "client", "tunnel"))
# The load balancer waits this much longer than the gateway, so the gateway's own answer
# (504, 408) reaches the client instead of a cut connection.
BALANCER_MARGIN_SECONDS = 5


def balancer_timeout_seconds(spec: ServiceSpec) -> int:
    """The longest the gateway may stay silent on a connection it serves, plus a margin."""
    limits = spec.gateway.limits
    longest = max(limits.first_byte_timeout_seconds, limits.idle_timeout_seconds,
                  limits.header_timeout_seconds)
    return math.ceil(longest) + BALANCER_MARGIN_SECONDS


def balancer_annotations(spec: ServiceSpec, config: StackConfig) -> dict[str, str]:
    """What the target's load balancer needs beyond the Service itself (the stack's own win)."""
    if config.target != "cloud":
        return {}
    # Scaleway forwards TCP: inactivity on either side, while the engine thinks or between two
    # streamed tokens, must outlast the gateway's own timeouts (server defaults to 10s).
    timeout = f"{balancer_timeout_seconds(spec)}s"
    return dict.fromkeys(SCW_TIMEOUTS, timeout)


def _service(spec: ServiceSpec, config: StackConfig, names: Names) -> dict[str, Any]:
    service_spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": names.selector("gateway"),
        "ports": [{"name": HTTP, "port": spec.gateway.port, "targetPort": HTTP, "protocol": "TCP"}],
    }
    annotations: dict[str, str] = {}
    balancer = config.exposure.load_balancer
    if balancer is not None:
        service_spec["type"] = "LoadBalancer"
        # The client allowlist. Scaleway's cloud-controller-manager turns it into the load
        # balancer's ACLs, ending in deny-all (scaleway/acl.go, makeACLSpecs).
        service_spec["loadBalancerSourceRanges"] = list(balancer.source_ranges)
        # Only nodes running a gateway receive traffic (no second hop, no SNAT by kube-proxy).
        service_spec["externalTrafficPolicy"] = "Local"
        annotations = {**balancer_annotations(spec, config), **balancer.annotations}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": names.metadata(names.gateway, "gateway", annotations=annotations),
        "spec": service_spec,
    }


def metrics_service(config: StackConfig, names: Names) -> dict[str, Any]:
    """The metrics listener's own ClusterIP Service, for the ServiceMonitor (key names and token
    counts stay inside the cluster: the public Service carries the API port alone)."""
    metadata = names.metadata(names.gateway_metrics, "gateway")
    metadata["labels"][LISTENER_LABEL] = METRICS
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector("gateway"),
            "ports": [{"name": METRICS, "port": config.gateway.metrics_port, "targetPort": METRICS,
                       "protocol": "TCP"}],
        },
    }


def gateway_objects(
    spec: ServiceSpec, config: StackConfig, names: Names, image: str
) -> list[dict[str, Any]]:
    settings = settings_json(gateway_settings(spec, config, names))
    return [
        *_rbac(names),
        killswitch_configmap(names),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": names.metadata(names.gateway_settings, "gateway"),
            "data": {SETTINGS_FILE: settings},
        },
        gateway_deployment(spec, config, names, image, settings),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": names.metadata(names.gateway, "gateway"),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector("gateway")}},
        },
        _service(spec, config, names),
        metrics_service(config, names),
    ]
