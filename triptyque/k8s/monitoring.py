"""ServiceMonitors and the PrometheusRule, from triptyque.monitoring (no rule is written here)."""

from __future__ import annotations

import json
from typing import Any

from triptyque.k8s.config import StackConfig
from triptyque.k8s.names import HTTP, LISTENER_LABEL, METRICS, Component, Names
from triptyque.spec import ServiceSpec


def _monitor(config: StackConfig, metadata: dict[str, Any], selector: dict[str, str],
             namespaces: dict[str, Any], port: str, job: str, node_label: str,
             keep: str | None = None) -> dict[str, Any]:
    """One ServiceMonitor whose series carry triptyque's job name and node label: the rules
    select on the same job names and node label on every target."""
    metadata["labels"].update(config.monitoring.labels)
    endpoint: dict[str, Any] = {
        "port": port,
        "path": "/metrics",
        "interval": config.monitoring.scrape_interval,
        "relabelings": [
            {"targetLabel": "job", "replacement": job, "action": "replace"},
            {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": node_label,
             "action": "replace"},
        ],
    }
    if keep is not None:
        endpoint["metricRelabelings"] = [{"sourceLabels": ["__name__"], "regex": keep, "action": "keep"}]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": namespaces,
            "endpoints": [endpoint],
        },
    }


def _service_monitor(
    config: StackConfig, names: Names, component: Component, job: str, node_label: str
) -> dict[str, Any]:
    if component == "gateway":  # the metrics listener's own Service (k8s.gateway.metrics_service)
        return _monitor(config, names.metadata(names.gateway, component),
                        {**names.selector(component), LISTENER_LABEL: METRICS},
                        {"matchNames": [names.namespace]}, METRICS, job, node_label)
    return _monitor(config, names.metadata(names.engine, component), names.selector(component),
                    {"matchNames": [names.namespace]}, HTTP, job, node_label)


# kube-prometheus-stack's node-exporter Service (its prometheus-node-exporter subchart):
# label app.kubernetes.io/name=prometheus-node-exporter, port "http-metrics" (chart values,
# prometheus-node-exporter.service.portName), scraped by the chart as job "node-exporter".
NODE_EXPORTER_SERVICE = {"app.kubernetes.io/name": "prometheus-node-exporter"}
NODE_EXPORTER_PORT_NAME = "http-metrics"
# Only the node metrics triptyque's rules and dashboards read travel a second time.
NODE_METRICS_KEPT = "node_(filesystem|memory)_.*"
# NVIDIA's GPU operator: Service nvidia-dcgm-exporter, label app=nvidia-dcgm-exporter, port
# "gpu-metrics" (NVIDIA/gpu-operator, assets/state-dcgm-exporter/0600_service.yaml).
DCGM_SERVICE = {"app": "nvidia-dcgm-exporter"}
DCGM_PORT_NAME = "gpu-metrics"


def _exporter_monitor(
    config: StackConfig, names: Names, name: str, job: str, node_label: str,
    service: dict[str, str], port: str, namespaces: dict[str, Any], keep: str | None = None,
) -> dict[str, Any]:
    """A ServiceMonitor for an exporter someone else runs, under triptyque's job name.

    The exporter's own job (and the chart rules and dashboards that select it) is left
    alone: this is a second scrape, relabelled to the job triptyque's rules select.
    """
    return _monitor(config, names.metadata(name, "gateway"), dict(service), namespaces, port, job,
                    node_label, keep)


def exporter_monitors(config: StackConfig, names: Names) -> list[dict[str, Any]]:
    """node-exporter of kube-prometheus-stack (when the stack installs it) and NVIDIA's
    dcgm-exporter where the GPU operator is not ours (Kapsule ships its own, with no job
    relabelling; charts/gpu-operator relabels its own to job "dcgm")."""
    from triptyque.monitoring.config import JOB_GPU, JOB_NODE, NODE_LABEL

    monitors = []
    if config.monitoring.prometheus == "stack":
        monitors.append(_exporter_monitor(
            config, names, f"{names.app}-node", JOB_NODE, NODE_LABEL, NODE_EXPORTER_SERVICE,
            NODE_EXPORTER_PORT_NAME, {"matchNames": [config.monitoring.namespace]},
            keep=NODE_METRICS_KEPT))
    if not config.gpu_operator:
        monitors.append(_exporter_monitor(
            config, names, f"{names.app}-dcgm", JOB_GPU, NODE_LABEL, DCGM_SERVICE, DCGM_PORT_NAME,
            {"any": True}))
    return monitors


# kube-prometheus-stack's Grafana loads every ConfigMap with this label, in any namespace
# (chart values: grafana.sidecar.dashboards label grafana_dashboard, labelValue "1",
# searchNamespace ALL).
DASHBOARD_LABEL = ("grafana_dashboard", "1")


def dashboard_configmaps(spec: ServiceSpec, config: StackConfig, names: Names) -> list[dict[str, Any]]:
    """triptyque.monitoring's dashboards, one ConfigMap each, for Grafana's sidecar."""
    from triptyque.monitoring.dashboards import dashboards

    maps = []
    for name, board in dashboards(spec).items():
        metadata = names.metadata(f"{names.app}-{name.removeprefix('triptyque-')}-dashboard", "gateway")
        metadata["labels"].update({**config.monitoring.labels, DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]})
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                     "data": {f"{name}.json": json.dumps(board, indent=1, sort_keys=True)}})
    return maps


def monitoring_objects(spec: ServiceSpec, config: StackConfig, names: Names) -> list[dict[str, Any]]:
    from triptyque.monitoring.config import JOB_ENGINE, JOB_GATEWAY, NODE_LABEL
    from triptyque.monitoring.rules import rule_groups

    rule_metadata = names.metadata(names.app, "gateway")
    rule_metadata["labels"].update(config.monitoring.labels)
    return [
        _service_monitor(config, names, "gateway", JOB_GATEWAY, NODE_LABEL),
        _service_monitor(config, names, "engine", JOB_ENGINE, NODE_LABEL),
        *exporter_monitors(config, names),
        *dashboard_configmaps(spec, config, names),
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": rule_metadata,
            "spec": {"groups": rule_groups(spec, config.target)},
        },
    ]
