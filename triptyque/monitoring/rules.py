"""Recording and alerting rules, built from the service spec for one target.

Public API (the Kubernetes stack imports it for its PrometheusRule):

    rule_groups(spec, target) -> list[dict]
        Every rule group, recording first, in Prometheus' rule-file shape
        (``{"name", "rules": [...]}``). A PrometheusRule's ``spec`` is
        ``{"groups": rule_groups(spec, target)}``.
    recording_groups(spec, target) / alerting_groups(spec, target) -> list[dict]
        The same, split the way ``monitoring/rules/`` and ``monitoring/alerts/`` are.

Objectives come from ``spec.slo``; selectors, thresholds and ``for:`` durations
from ``triptyque.monitoring.config`` (the target picks its profile there). Nothing
here differs between targets except what the profile says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from triptyque.kinds import TargetName
from triptyque.monitoring import config
from triptyque.monitoring.config import (
    API_ROUTE_MATCHER,
    JOB_ENGINE,
    JOB_GATEWAY,
    JOB_GPU,
    JOB_NODE,
    NODE_LABEL,
    SELECTOR,
    SLI_WINDOWS,
    THRESHOLDS,
    BurnWindow,
    Profile,
)
from triptyque.spec import ServiceSpec

Rule = dict[str, Any]
Group = dict[str, Any]

# The spec's *_p95_seconds objectives: 95 % of requests at or under the bound.
LATENCY_OBJECTIVE = 0.95
SLO_ERRORS = "triptyque:slo_errors:ratio_rate"

GATEWAY = SELECTOR[JOB_GATEWAY]
ENGINE = SELECTOR[JOB_ENGINE]
NODE = SELECTOR[JOB_NODE]
GPU = SELECTOR[JOB_GPU]
SCRAPED_BY_NODE = f'job=~"{JOB_GATEWAY}|{JOB_ENGINE}|{JOB_NODE}"'


def percent(ratio: float) -> str:
    """0.995 -> "99.5%"."""
    return f"{ratio * 100:.4g}%"


def runbook_url(alert: str) -> str:
    return f"{config.RUNBOOK}#{alert.lower()}"


def le_matcher(bound: float) -> str:
    """A matcher for the bucket at ``bound`` as either client library writes it ("2" or "2.0")."""
    forms = sorted({repr(float(bound)), format(float(bound), "g")})
    pattern = "|".join(re.escape(form) for form in forms)
    return 'le=~"' + pattern.replace("\\", "\\\\") + '"'


@dataclass(frozen=True)
class Slo:
    """One objective of the spec and how its bad events are counted."""

    name: str
    title: str
    objective: float
    promise: str
    failed: str

    @property
    def budget(self) -> float:
        return 1.0 - self.objective


def slos(spec: ServiceSpec) -> list[Slo]:
    slo = spec.slo
    return [
        Slo("availability", "Availability", slo.availability,
            f"{percent(slo.availability)} of API requests succeed", "failed"),
        Slo("ttft", "Time to first token", LATENCY_OBJECTIVE,
            f"95% of streamed requests get a first token within {slo.ttft_p95_seconds:g}s",
            f"waited more than {slo.ttft_p95_seconds:g}s for a first token"),
        Slo("latency", "Latency", LATENCY_OBJECTIVE,
            f"95% of API requests complete within {slo.latency_p95_seconds:g}s",
            f"took more than {slo.latency_p95_seconds:g}s"),
    ]


def _sli_expr(slo: str, spec: ServiceSpec, window: str) -> str:
    requests = f"triptyque_gateway_requests_total{{{GATEWAY},{API_ROUTE_MATCHER}}}"
    if slo == "availability":
        errors = (f"triptyque_gateway_requests_total"
                  f"{{{GATEWAY},{API_ROUTE_MATCHER},{config.SERVER_ERROR_MATCHER}}}")
        cut = f"triptyque_gateway_streams_cut_total{{{GATEWAY},{config.FAILED_STREAM_MATCHER}}}"
        return (f"(\n  (sum(rate({errors}[{window}])) or vector(0))\n"
                f"  + (sum(rate({cut}[{window}])) or vector(0))\n)\n"
                f"/\nsum(rate({requests}[{window}]))\n")
    metric, bound = {
        "ttft": ("triptyque_gateway_time_to_first_token_seconds", spec.slo.ttft_p95_seconds),
        "latency": ("triptyque_gateway_request_duration_seconds", spec.slo.latency_p95_seconds),
    }[slo]
    within = f"{metric}_bucket{{{GATEWAY},{API_ROUTE_MATCHER},{le_matcher(bound)}}}"
    total = f"{metric}_count{{{GATEWAY},{API_ROUTE_MATCHER}}}"
    return (f"1 - (\n  sum(rate({within}[{window}]))\n  /\n"
            f"  sum(rate({total}[{window}]))\n)\n")


def _sli_group(spec: ServiceSpec) -> Group:
    rules = [
        {
            "record": f"{SLO_ERRORS}{window}",
            "expr": _sli_expr(slo.name, spec, window),
            "labels": {"service": spec.name, "slo": slo.name},
        }
        for slo in slos(spec)
        for window in SLI_WINDOWS
    ]
    return {"name": "triptyque.sli", "rules": rules}


def _quantile_rules(record: str, metric: str, selector: str, by: str) -> list[Rule]:
    return [
        {
            "record": record,
            "expr": (f"histogram_quantile({q}, sum by ({by}, le) "
                     f"(rate({metric}_bucket{{{selector}}}[5m])))"),
            "labels": {"quantile": str(q)},
        }
        for q in config.QUANTILES
    ]


def _serving_group() -> Group:
    rules: list[Rule] = [
        {"record": "route_status:triptyque_gateway_requests:rate5m",
         "expr": f"sum by (route, status) (rate(triptyque_gateway_requests_total{{{GATEWAY}}}[5m]))"},
        {"record": "instance:triptyque_gateway_requests:rate5m",
         "expr": (f"sum by (instance, {NODE_LABEL}) "
                  f"(rate(triptyque_gateway_requests_total{{{GATEWAY}}}[5m]))")},
        {"record": "instance:triptyque_gateway_server_errors:rate5m",
         "expr": (f"sum by (instance, {NODE_LABEL}) (rate(triptyque_gateway_requests_total"
                  f"{{{GATEWAY},{config.SERVER_ERROR_MATCHER}}}[5m]))")},
        {"record": "reason:triptyque_gateway_upstream_errors:rate5m",
         "expr": f"sum by (reason) (rate(triptyque_gateway_upstream_errors_total{{{GATEWAY}}}[5m]))"},
        {"record": "reason:triptyque_gateway_streams_cut:rate5m",
         "expr": f"sum by (reason) (rate(triptyque_gateway_streams_cut_total{{{GATEWAY}}}[5m]))"},
        {"record": "key_kind:triptyque_gateway_tokens:rate5m",
         "expr": f"sum by (key, kind) (rate(triptyque_gateway_tokens_total{{{GATEWAY}}}[5m]))"},
        {"record": "model_name:vllm_prompt_tokens:rate5m",
         "expr": f"sum by (model_name) (rate(vllm:prompt_tokens_total{{{ENGINE}}}[5m]))"},
        {"record": "model_name:vllm_generation_tokens:rate5m",
         "expr": f"sum by (model_name) (rate(vllm:generation_tokens_total{{{ENGINE}}}[5m]))"},
    ]
    rules += _quantile_rules("route:triptyque_gateway_request_duration_seconds:histogram_quantile",
                             "triptyque_gateway_request_duration_seconds", GATEWAY, "route")
    rules += _quantile_rules("route:triptyque_gateway_time_to_first_token_seconds:histogram_quantile",
                             "triptyque_gateway_time_to_first_token_seconds", GATEWAY, "route")
    rules += _quantile_rules("model_name:vllm_time_to_first_token_seconds:histogram_quantile",
                             "vllm:time_to_first_token_seconds", ENGINE, "model_name")
    rules += _quantile_rules("model_name:vllm_e2e_request_latency_seconds:histogram_quantile",
                             "vllm:e2e_request_latency_seconds", ENGINE, "model_name")
    return {"name": "triptyque.serving", "rules": rules}


def _saturation_group() -> Group:
    return {"name": "triptyque.saturation", "rules": [
        {"record": "instance:triptyque_gateway_concurrency:ratio",
         "expr": (f"triptyque_gateway_in_flight_requests{{{GATEWAY}}}\n/\n"
                  f"triptyque_gateway_max_concurrent_requests{{{GATEWAY}}}\n")},
        {"record": "model_name:vllm_num_requests_running:sum",
         "expr": f"sum by (model_name) (vllm:num_requests_running{{{ENGINE}}})"},
        {"record": "model_name:vllm_num_requests_waiting:sum",
         "expr": f"sum by (model_name) (vllm:num_requests_waiting{{{ENGINE}}})"},
        {"record": "instance:vllm_kv_cache_usage:ratio",
         "expr": (f"max by (instance, {NODE_LABEL}, model_name) "
                  f"(vllm:kv_cache_usage_perc{{{ENGINE}}})")},
        {"record": "instance_gpu:dcgm_gpu_utilization:ratio",
         "expr": f"DCGM_FI_DEV_GPU_UTIL{{{GPU}}} / 100"},
        {"record": "instance_gpu:dcgm_framebuffer_used:ratio",
         "expr": (f"DCGM_FI_DEV_FB_USED{{{GPU}}}\n/\n"
                  f"(DCGM_FI_DEV_FB_USED{{{GPU}}} + DCGM_FI_DEV_FB_FREE{{{GPU}}})\n")},
        {"record": "instance:node_memory_available:ratio",
         "expr": (f"node_memory_MemAvailable_bytes{{{NODE}}}\n/\n"
                  f"node_memory_MemTotal_bytes{{{NODE}}}\n")},
    ]}


def recording_groups(spec: ServiceSpec, target: TargetName | None = None) -> list[Group]:
    del target  # recording rules are the same everywhere; the signature matches the others
    return [_sli_group(spec), _serving_group(), _saturation_group()]


def _alert(
    name: str, expr: str, hold: str, severity: str, spec: ServiceSpec, summary: str,
    description: str, labels: dict[str, str] | None = None,
) -> Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity, "service": spec.name, **(labels or {})},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": runbook_url(name),
        },
    }


def burn_factor(window: BurnWindow, spec: ServiceSpec) -> float:
    """How many times faster than sustainable the budget burns when this window fires."""
    return window.budget_spent * spec.slo.window_days * 24 / (config.seconds(window.long) / 3600)


def _burn_alerts(spec: ServiceSpec, profile: Profile) -> list[Rule]:
    rules = []
    for slo in slos(spec):
        name = {"availability": "AvailabilityBudgetBurn", "ttft": "TimeToFirstTokenBudgetBurn",
                "latency": "LatencyBudgetBurn"}[slo.name]
        for window in profile.burn_windows:
            factor = burn_factor(window, spec)
            limit = f"({factor:.4g} * {slo.budget:.4g})"
            selector = f'{{service="{spec.name}",slo="{slo.name}"}}'
            pace = "fast" if window.severity == "critical" else "steadily"
            rules.append(_alert(
                name,
                f"{SLO_ERRORS}{window.long}{selector} > {limit}\n"
                f"and\n{SLO_ERRORS}{window.short}{selector} > {limit}\n",
                window.hold, window.severity, spec,
                f"{slo.title} error budget is burning {pace}",
                f"{{{{ $value | humanizePercentage }}}} of requests {slo.failed} over the last "
                f"{window.long} (objective: {slo.promise} over {spec.slo.window_days} days). "
                f"At this pace {percent(window.budget_spent)} of the error budget is gone in "
                f"{window.long}.",
                {"slo": slo.name, "long": window.long, "short": window.short},
            ))
    return rules


def _service_alerts(spec: ServiceSpec, profile: Profile) -> list[Rule]:
    rules = [
        _alert("KillSwitchEngaged",
               f"triptyque_gateway_kill_switch_engaged{{{GATEWAY}}} == 1",
               profile.hold("KillSwitchEngaged"), "warning", spec,
               "Kill switch engaged on {{ $labels.node }}",
               "Gateway {{ $labels.instance }} refuses every inference request with HTTP 503 "
               "because an operator engaged the kill switch."),
        # The audit chain only grows: a sequence below the one Prometheus saw earlier means
        # entries were cut (or an old state and log were put back) on that gateway.
        _alert("AuditLogRewound",
               f"triptyque_gateway_audit_sequence{{{GATEWAY}}} < max_over_time("
               f"triptyque_gateway_audit_sequence{{{GATEWAY}}}[1d])",
               profile.hold("AuditLogRewound"), "critical", spec,
               "Kill-switch audit log rewound on {{ $labels.node }}",
               "Gateway {{ $labels.instance }} reports audit sequence {{ $value }}, below what it "
               "reported earlier: entries of the kill-switch audit log were removed."),
        # A decision the audit log or the state refused (a full ConfigMap whose archive cannot be
        # written, a disk full): that gateway fails closed and the other replicas follow.
        _alert("AuditWriteFailed",
               f"increase(triptyque_gateway_audit_write_failures_total{{{GATEWAY}}}[10m]) > 0",
               profile.hold("AuditWriteFailed"), "critical", spec,
               "Kill-switch decision not recorded on {{ $labels.node }}",
               "Gateway {{ $labels.instance }} could not record a kill-switch decision in its audit "
               "log; serving is stopped (fail closed) until the log accepts entries and an operator "
               "resumes."),
        _alert("EngineDown", f"up{{{ENGINE}}} == 0", profile.hold("EngineDown"), "critical", spec,
               "vLLM engine down on {{ $labels.node }}",
               "Prometheus cannot scrape the engine at {{ $labels.instance }}; the gateway on "
               "{{ $labels.node }} answers 502 to inference requests."),
        _alert("GatewayDown", f"up{{{GATEWAY}}} == 0", profile.hold("GatewayDown"), "critical",
               spec, "Gateway down on {{ $labels.node }}",
               "Prometheus cannot scrape the gateway at {{ $labels.instance }}; clients of "
               "{{ $labels.node }} get connection errors."),
        _alert("ExporterDown", f'up{{job=~"{JOB_NODE}|{JOB_GPU}"}} == 0',
               profile.hold("ExporterDown"), "warning", spec,
               "{{ $labels.job }} exporter down on {{ $labels.node }}",
               "Prometheus cannot scrape {{ $labels.instance }}; disk, memory or GPU alerts for "
               "{{ $labels.node }} are blind."),
        _alert("NodeUnreachable", f"max by ({NODE_LABEL}) (up{{{SCRAPED_BY_NODE}}}) == 0",
               profile.hold("NodeUnreachable"), "critical", spec,
               "Node {{ $labels.node }} is unreachable",
               "No target on {{ $labels.node }} answers a scrape: the machine, its network or "
               "its services are down."),
    ]
    for job in profile.expected_jobs:
        rules.append(_alert(
            "ScrapeJobAbsent", f'absent(up{{job="{job}"}})', profile.hold("ScrapeJobAbsent"),
            "warning" if job == JOB_NODE else "critical", spec,
            "No {{ $labels.job }} target is scraped",
            "Prometheus has no target for job {{ $labels.job }}: service discovery lost it. "
            "Every alert that reads this job is blind.",
            {"job": job},
        ))
    lookback = THRESHOLDS.vanished_lookback
    rules.append(_alert(
        "NodeStoppedReporting",
        f"count by ({NODE_LABEL}) (max_over_time(up{{{NODE}}}[{lookback}]))\n"
        f"unless on ({NODE_LABEL})\ncount by ({NODE_LABEL}) (up{{{NODE}}})\n",
        profile.hold("NodeStoppedReporting"), "warning", spec,
        "Node {{ $labels.node }} stopped reporting",
        f"{{{{ $labels.node }}}} was scraped within the last {lookback} and is no longer a "
        "scrape target at all.",
    ))
    return rules


def _saturation_alerts(spec: ServiceSpec, profile: Profile) -> list[Rule]:
    gpu_limit = spec.engine.gpu_memory_utilization + (1 - spec.engine.gpu_memory_utilization) / 2
    t = THRESHOLDS
    return [
        _alert("GatewayConcurrencySaturated",
               f"instance:triptyque_gateway_concurrency:ratio > {t.gateway_concurrency_ratio:g}",
               profile.hold("GatewayConcurrencySaturated"), "warning", spec,
               "Gateway on {{ $labels.node }} is near its concurrency limit",
               "{{ $labels.instance }} runs at {{ $value | humanizePercentage }} of its "
               f"{spec.gateway.limits.max_concurrent_requests} concurrent requests; "
               "past the limit clients get HTTP 429."),
        _alert("EngineQueueBacklog",
               f"vllm:num_requests_waiting{{{ENGINE}}} > {t.engine_requests_waiting:g}",
               profile.hold("EngineQueueBacklog"), "warning", spec,
               "Requests queue in the engine on {{ $labels.node }}",
               "{{ $value }} requests wait in the vLLM queue of {{ $labels.instance }}: the "
               "engine cannot keep up and time to first token grows."),
        _alert("KVCacheNearlyFull",
               f"vllm:kv_cache_usage_perc{{{ENGINE}}} > {t.kv_cache_usage_ratio:g}",
               profile.hold("KVCacheNearlyFull"), "warning", spec,
               "KV cache nearly full on {{ $labels.node }}",
               "{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its KV cache; "
               "vLLM starts preempting requests when it is full."),
        _alert("GPUMemoryNearlyFull",
               f"instance_gpu:dcgm_framebuffer_used:ratio > {gpu_limit:.4g}",
               profile.hold("GPUMemoryNearlyFull"), "warning", spec,
               "GPU {{ $labels.gpu }} memory nearly full on {{ $labels.node }}",
               "{{ $value | humanizePercentage }} of GPU {{ $labels.gpu }} memory is used; vLLM "
               f"reserves {percent(spec.engine.gpu_memory_utilization)}, so something else is "
               "using the card and the engine risks running out of memory."),
    ]


def _node_alerts(spec: ServiceSpec, profile: Profile) -> list[Rule]:
    fs = f"{NODE},{config.NODE_FILESYSTEM_MATCHER}"
    t = THRESHOLDS
    return [
        _alert("NodeFilesystemSpaceLow",
               f"node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}"
               f" < {t.node_filesystem_available_ratio:g}\n"
               f"and\nnode_filesystem_readonly{{{fs}}} == 0\n",
               profile.hold("NodeFilesystemSpaceLow"), "warning", spec,
               "Filesystem {{ $labels.mountpoint }} on {{ $labels.node }} is almost full",
               "Only {{ $value | humanizePercentage }} of {{ $labels.mountpoint }} "
               "({{ $labels.device }}) is free on {{ $labels.node }}."),
        _alert("NodeMemoryLow",
               f"instance:node_memory_available:ratio < {t.node_memory_available_ratio:g}",
               profile.hold("NodeMemoryLow"), "warning", spec,
               "Node {{ $labels.node }} is low on memory",
               "Only {{ $value | humanizePercentage }} of the memory of {{ $labels.node }} is "
               "available; the kernel may kill the engine."),
    ]


def alerting_groups(spec: ServiceSpec, target: TargetName | None = None) -> list[Group]:
    profile = config.profile_for(target)
    return [
        {"name": "triptyque.slo.alerts", "rules": _burn_alerts(spec, profile)},
        {"name": "triptyque.service.alerts", "rules": _service_alerts(spec, profile)},
        {"name": "triptyque.saturation.alerts", "rules": _saturation_alerts(spec, profile)},
        {"name": "triptyque.node.alerts", "rules": _node_alerts(spec, profile)},
    ]


def rule_groups(spec: ServiceSpec, target: TargetName | None = None) -> list[Group]:
    """Every group for ``target`` (None: the checked-in production rendering)."""
    return recording_groups(spec, target) + alerting_groups(spec, target)

