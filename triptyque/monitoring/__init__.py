"""Monitoring as code: rules, alerts, scrape configs, dashboards, from the service spec.

Everything is a pure function of the spec and the target; writing files is a thin
layer on top. Per target:

    local        local.render(spec, out_dir, gateway=, engine=, alertmanager=, webhook=)
                 -> LocalMonitoring (prometheus.yml, alertmanager.yml, rule files)
    edge         edge.render(spec, inventory_hosts, out_dir) -> prometheus.yml path
    onprem/cloud rules.rule_groups(spec, target) is the PrometheusRule's spec.groups;
                 ServiceMonitors relabel to config.JOB_* and config.NODE_LABEL
                 (triptyque/k8s/monitoring.py builds them)

Modules:

    config            the one place for job names, selectors, thresholds, per-target timings
    rules             recording rules (SLIs, quantiles, saturation) and alerts
    prometheus        Prometheus and Alertmanager configuration documents
    dashboards        Grafana dashboards (Grafana Foundation SDK)
    promtool_tests    promtool unit tests that bracket every alert's ``for:`` window
    metrics           metric names captured from the real exporters
    generate          the checked-in files under monitoring/ (``python -m triptyque.monitoring``)
    webhook           a local Alertmanager receiver that appends to a JSON-lines file
"""
