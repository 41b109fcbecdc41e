"""ServiceMonitors and the PrometheusRule, from triptyque.monitoring (no rule is written here)."""

from __future__ import annotations

from typing import Any

from triptyque.k8s.config import StackConfig
from triptyque.k8s.names import HTTP, Component, Names
from triptyque.spec import ServiceSpec


def _service_monitor(
    config: StackConfig, names: Names, component: Component, job: str, node_label: str
) -> dict[str, Any]:
    name = names.gateway if component == "gateway" else names.engine
    metadata = names.metadata(name, component)
    metadata["labels"].update(config.monitoring.labels)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": names.selector(component)},
            "namespaceSelector": {"matchNames": [names.namespace]},
            "endpoints": [{
                "port": HTTP,
                "path": "/metrics",
                "interval": config.monitoring.scrape_interval,
                # The rules select on the same job names and node label on every target.
                "relabelings": [
                    {"targetLabel": "job", "replacement": job, "action": "replace"},
                    {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": node_label,
                     "action": "replace"},
                ],
            }],
        },
    }


def monitoring_objects(spec: ServiceSpec, config: StackConfig, names: Names) -> list[dict[str, Any]]:
    from triptyque.monitoring.config import JOB_ENGINE, JOB_GATEWAY, NODE_LABEL
    from triptyque.monitoring.rules import rule_groups

    rule_metadata = names.metadata(names.app, "gateway")
    rule_metadata["labels"].update(config.monitoring.labels)
    return [
        _service_monitor(config, names, "gateway", JOB_GATEWAY, NODE_LABEL),
        _service_monitor(config, names, "engine", JOB_ENGINE, NODE_LABEL),
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": rule_metadata,
            "spec": {"groups": rule_groups(spec, config.target)},
        },
    ]
