"""Who may talk to whom: NetworkPolicies (only the gateways reach the engine) and the Ingress."""

from __future__ import annotations

import math
from typing import Any

from triptyque.k8s.config import StackConfig
from triptyque.k8s.names import HTTP, METRICS, Names
from triptyque.spec import ServiceSpec


def _from_namespace(namespace: str, pods: dict[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    }
    if pods:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return peer


def _policy(names: Names, name: str, pods: dict[str, str], peers: list[dict[str, Any]],
            *, metrics_peers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``peers`` may reach the pods' HTTP port; ``metrics_peers`` their metrics port only."""
    # An empty ``from`` would admit every source (NetworkPolicy semantics): a rule without
    # peers is left out instead.
    rules = [{"from": peers, "ports": [{"protocol": "TCP", "port": HTTP}]}] if peers else []
    if metrics_peers:
        rules.append({"from": metrics_peers, "ports": [{"protocol": "TCP", "port": METRICS}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": names.namespace, "labels": names.labels("gateway")},
        "spec": {
            "podSelector": {"matchLabels": pods},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def network_policies(config: StackConfig, names: Names) -> list[dict[str, Any]]:
    prometheus = _from_namespace(config.monitoring.namespace, config.monitoring.prometheus_pod_labels)
    gateway_peers: list[dict[str, Any]] = []
    exposure = config.exposure
    if exposure.ingress is not None:
        gateway_peers.append(_from_namespace(exposure.ingress.controller_namespace))
    gateway_peers += [_from_namespace(ns) for ns in exposure.client_namespaces]
    # Per target: client ranges where the balancer keeps client addresses (onprem, e.g. MetalLB),
    # the balancer's own subnet where it is a proxy (Kapsule); see StackConfig.load_balancer_peers.
    gateway_peers += [{"ipBlock": {"cidr": cidr}} for cidr in config.load_balancer_peers()]
    deny_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{names.app}-deny-ingress", "namespace": names.namespace,
                     "labels": names.labels("gateway")},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    return [
        deny_all,
        # The engine's port also serves /metrics, so Prometheus's pods are let in as well;
        # nothing else in or out of the cluster reaches it.
        _policy(names, names.engine, names.selector("engine"),
                [{"podSelector": {"matchLabels": names.selector("gateway")}}, prometheus]),
        # Prometheus reaches the gateways' metrics listener only, and nothing else does.
        _policy(names, names.gateway, names.selector("gateway"), gateway_peers, metrics_peers=[prometheus]),
    ]


def ingress(spec: ServiceSpec, config: StackConfig, names: Names) -> dict[str, Any] | None:
    options = config.exposure.ingress
    if options is None:
        return None
    annotations = dict(options.annotations)
    if options.class_name == "nginx":
        limits = spec.gateway.limits
        annotations = {
            "nginx.ingress.kubernetes.io/whitelist-source-range": ",".join(options.source_ranges),
            "nginx.ingress.kubernetes.io/proxy-body-size": str(limits.max_body_bytes),
            "nginx.ingress.kubernetes.io/proxy-read-timeout": str(
                math.ceil(max(limits.first_byte_timeout_seconds, limits.idle_timeout_seconds))
            ),
            # Token streams (server-sent events) must reach the client as they are produced.
            "nginx.ingress.kubernetes.io/proxy-buffering": "off",
            **annotations,
        }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": names.metadata(names.gateway, "gateway", annotations=annotations),
        "spec": {
            "ingressClassName": options.class_name,
            "tls": [{"hosts": [options.host], "secretName": options.tls_secret}],
            "rules": [{
                "host": options.host,
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": names.gateway, "port": {"name": HTTP}}},
                }]},
            }],
        },
    }
