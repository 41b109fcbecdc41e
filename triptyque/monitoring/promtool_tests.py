"""promtool unit tests: hand-written scenarios, timed from each rule's own ``for:``.

Every alert rule has one scenario: the series that make its condition true from a
known step on, and the exact labels and annotations it must carry. ``unit_tests``
turns them into a promtool test file in which each rule is checked twice, one
evaluation before its ``for:`` window ends (no alert) and at the end of it (the
alert, exactly). The recording rules that feed the SLO alerts get value tests of
their own. The same scenarios run against every profile, so the local target's
short windows are bracketed as well as production's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from triptyque.monitoring import config, rules
from triptyque.monitoring.config import Profile
from triptyque.spec import ServiceSpec

LEAD_IN = 3  # steps of normal life before each scenario's trouble starts


@dataclass(frozen=True)
class Series:
    """A series whose value is ``before`` until the trouble starts and ``after`` from then on.

    ``after=None`` means the series is gone: a stale marker, then no samples.
    """

    selector: str
    before: float
    after: float | None

    def values(self, start: int, total: int) -> str:
        """promtool's expanding notation: ``"0x2 1x5"`` is three 0s then six 1s."""
        head = f"{_number(self.before)}x{start - 1}"
        if self.after is None:
            return f"{head} stale"
        return f"{head} {_number(self.after)}x{total - start - 1}"


@dataclass(frozen=True)
class Scenario:
    alert: str
    series: tuple[Series, ...]
    labels: dict[str, str]
    summary: str
    description: str
    name: str = ""
    # Scenarios with the same batch share one test group (their series never overlap),
    # which keeps promtool's run short for the long burn-rate windows.
    batch: str = ""

    def title(self) -> str:
        return self.name or f"{self.alert} fires once its condition has held for its for: window"


@dataclass(frozen=True)
class ExprCheck:
    """A recording rule's value at ``at`` steps, from counters growing by ``per_step``."""

    name: str
    counters: dict[str, float]
    expr: str
    labels: dict[str, str]
    value: float
    at: int = 20
    gauges: dict[str, float] = field(default_factory=dict)


def _number(value: float) -> str:
    """Plain decimal: promtool's series notation reads the "+" of "8e+09" as a step."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def humanize_percentage(value: float) -> str:
    """Prometheus' template function: ``fmt.Sprintf("%.4g%%", v*100)``."""
    return f"{value * 100:.4g}%"


def _burn_scenarios(spec: ServiceSpec, profile: Profile) -> list[Scenario]:
    scenarios = []
    for slo in rules.slos(spec):
        alert = {"availability": "AvailabilityBudgetBurn", "ttft": "TimeToFirstTokenBudgetBurn",
                 "latency": "LatencyBudgetBurn"}[slo.name]
        for window in profile.burn_windows:
            limit = rules.burn_factor(window, spec) * slo.budget
            value = round(min(1.0, limit * 1.5), 4)
            selector = f'{{service="{spec.name}",slo="{slo.name}"}}'
            pace = "fast" if window.severity == "critical" else "steadily"
            scenarios.append(Scenario(
                alert=alert,
                name=f"{alert} {window.severity} on the {window.long}/{window.short} windows fires "
                     f"once both burn past {limit:.4g} for {window.hold}",
                batch=f"Budget burn alerts on the {window.long}/{window.short} windows fire once "
                      f"both windows have burnt too fast for {window.hold}",
                series=(
                    Series(f"{rules.SLO_ERRORS}{window.long}{selector}", 0, value),
                    Series(f"{rules.SLO_ERRORS}{window.short}{selector}", 0, value),
                ),
                labels={"severity": window.severity, "service": spec.name, "slo": slo.name,
                        "long": window.long, "short": window.short},
                summary=f"{slo.title} error budget is burning {pace}",
                description=(
                    f"{humanize_percentage(value)} of requests {slo.failed} over the last "
                    f"{window.long} (objective: {slo.promise} over {spec.slo.window_days} days). "
                    f"At this pace {rules.percent(window.budget_spent)} of the error budget is gone in "
                    f"{window.long}."
                ),
            ))
    return scenarios


def _gateway(metric: str, node: str = "edge-1") -> str:
    return f'{metric}{{job="triptyque-gateway",instance="10.0.0.11:8080",node="{node}"}}'


def _scenarios(spec: ServiceSpec, profile: Profile) -> list[Scenario]:
    service = spec.name
    gpu_limit = spec.engine.gpu_memory_utilization + (1 - spec.engine.gpu_memory_utilization) / 2
    engine = 'job="vllm",instance="10.0.0.11:8000",node="edge-1"'
    node = 'job="node",instance="10.0.0.11:9100",node="edge-1"'
    fs = f'{node},device="/dev/sda1",fstype="ext4",mountpoint="/var"'
    dcgm = ('job="dcgm",instance="10.0.0.11:9400",node="edge-1",gpu="0",'
            'UUID="GPU-0a1b",modelName="NVIDIA L4"')
    scenarios = [
        Scenario(
            "KillSwitchEngaged",
            (Series(_gateway("triptyque_gateway_kill_switch_engaged"), 0, 1),),
            {"severity": "warning", "service": service, "job": "triptyque-gateway",
             "instance": "10.0.0.11:8080", "node": "edge-1"},
            "Kill switch engaged on edge-1",
            "Gateway 10.0.0.11:8080 refuses every inference request with HTTP 503 because an "
            "operator engaged the kill switch.",
        ),
        Scenario(
            "AuditLogRewound",
            (Series(_gateway("triptyque_gateway_audit_sequence"), 552, 3),),
            {"severity": "critical", "service": service, "job": "triptyque-gateway",
             "instance": "10.0.0.11:8080", "node": "edge-1"},
            "Kill-switch audit log rewound on edge-1",
            "Gateway 10.0.0.11:8080 reports audit sequence 3, below what it reported earlier: "
            "entries of the kill-switch audit log were removed.",
        ),
        Scenario(
            "AuditWriteFailed",
            (Series(_gateway("triptyque_gateway_audit_write_failures_total"), 0, 1),),
            {"severity": "critical", "service": service, "job": "triptyque-gateway",
             "instance": "10.0.0.11:8080", "node": "edge-1"},
            "Kill-switch decision not recorded on edge-1",
            "Gateway 10.0.0.11:8080 could not record a kill-switch decision in its audit log; "
            "serving is stopped (fail closed) until the log accepts entries and an operator resumes.",
        ),
        Scenario(
            "EngineDown",
            (Series(f"up{{{engine}}}", 1, 0), Series(_gateway("up"), 1, 1)),
            {"severity": "critical", "service": service, "job": "vllm",
             "instance": "10.0.0.11:8000", "node": "edge-1"},
            "vLLM engine down on edge-1",
            "Prometheus cannot scrape the engine at 10.0.0.11:8000; the gateway on edge-1 "
            "answers 502 to inference requests.",
        ),
        Scenario(
            "GatewayDown",
            (Series(_gateway("up"), 1, 0), Series(f"up{{{engine}}}", 1, 1)),
            {"severity": "critical", "service": service, "job": "triptyque-gateway",
             "instance": "10.0.0.11:8080", "node": "edge-1"},
            "Gateway down on edge-1",
            "Prometheus cannot scrape the gateway at 10.0.0.11:8080; clients of edge-1 get "
            "connection errors.",
        ),
        Scenario(
            "ExporterDown",
            (Series(f"up{{{node}}}", 1, 0), Series(_gateway("up"), 1, 1)),
            {"severity": "warning", "service": service, "job": "node",
             "instance": "10.0.0.11:9100", "node": "edge-1"},
            "node exporter down on edge-1",
            "Prometheus cannot scrape 10.0.0.11:9100; disk, memory or GPU alerts for edge-1 are "
            "blind.",
        ),
        Scenario(
            "NodeUnreachable",
            (Series(_gateway("up"), 1, 0), Series(f"up{{{engine}}}", 1, 0),
             Series(f"up{{{node}}}", 1, 0), Series(_gateway("up", node="edge-2"), 1, 1)),
            {"severity": "critical", "service": service, "node": "edge-1"},
            "Node edge-1 is unreachable",
            "No target on edge-1 answers a scrape: the machine, its network or its services are "
            "down.",
        ),
        Scenario(
            "NodeStoppedReporting",
            (Series(f"up{{{node}}}", 1, None),
             Series('up{job="node",instance="10.0.0.12:9100",node="edge-2"}', 1, 1)),
            {"severity": "warning", "service": service, "node": "edge-1"},
            "Node edge-1 stopped reporting",
            f"edge-1 was scraped within the last {config.THRESHOLDS.vanished_lookback} and is no "
            "longer a scrape target at all.",
        ),
        Scenario(
            "GatewayConcurrencySaturated",
            (Series(_gateway("triptyque_gateway_in_flight_requests"), 4, 15),
             Series(_gateway("triptyque_gateway_max_concurrent_requests"), 16, 16)),
            {"severity": "warning", "service": service, "job": "triptyque-gateway",
             "instance": "10.0.0.11:8080", "node": "edge-1"},
            "Gateway on edge-1 is near its concurrency limit",
            f"10.0.0.11:8080 runs at 93.75% of its {spec.gateway.limits.max_concurrent_requests} "
            "concurrent requests; past the limit clients get HTTP 429.",
        ),
        Scenario(
            "EngineQueueBacklog",
            (Series(f'vllm:num_requests_waiting{{{engine},engine="0",model_name="tiny-llama"}}',
                    0, 3),),
            {"severity": "warning", "service": service, "job": "vllm", "instance": "10.0.0.11:8000",
             "node": "edge-1", "engine": "0", "model_name": "tiny-llama"},
            "Requests queue in the engine on edge-1",
            "3 requests wait in the vLLM queue of 10.0.0.11:8000: the engine cannot keep up and "
            "time to first token grows.",
        ),
        Scenario(
            "KVCacheNearlyFull",
            (Series(f'vllm:kv_cache_usage_perc{{{engine},engine="0",model_name="tiny-llama"}}',
                    0.2, 0.95),),
            {"severity": "warning", "service": service, "job": "vllm", "instance": "10.0.0.11:8000",
             "node": "edge-1", "engine": "0", "model_name": "tiny-llama"},
            "KV cache nearly full on edge-1",
            "10.0.0.11:8000 uses 95% of its KV cache; vLLM starts preempting requests when it is "
            "full.",
        ),
        Scenario(
            "GPUMemoryNearlyFull",
            (Series(f"DCGM_FI_DEV_FB_USED{{{dcgm}}}", 20000, 23000),
             Series(f"DCGM_FI_DEV_FB_FREE{{{dcgm}}}", 3000, 0)),
            {"severity": "warning", "service": service, "job": "dcgm", "instance": "10.0.0.11:9400",
             "node": "edge-1", "gpu": "0", "UUID": "GPU-0a1b", "modelName": "NVIDIA L4"},
            "GPU 0 memory nearly full on edge-1",
            f"100% of GPU 0 memory is used; vLLM reserves "
            f"{rules.percent(spec.engine.gpu_memory_utilization)}, so something else is using the card and "
            "the engine risks running out of memory.",
            name=f"GPUMemoryNearlyFull fires past {gpu_limit:.4g} of the card for its for: window",
        ),
        Scenario(
            "NodeFilesystemSpaceLow",
            (Series(f"node_filesystem_avail_bytes{{{fs}}}", 50e9, 4e9),
             Series(f"node_filesystem_size_bytes{{{fs}}}", 100e9, 100e9),
             Series(f"node_filesystem_readonly{{{fs}}}", 0, 0),
             Series(f'node_filesystem_avail_bytes{{{node},device="tmpfs",fstype="tmpfs",'
                    f'mountpoint="/run"}}', 0, 0),
             Series(f'node_filesystem_size_bytes{{{node},device="tmpfs",fstype="tmpfs",'
                    f'mountpoint="/run"}}', 1e9, 1e9)),
            {"severity": "warning", "service": service, "job": "node", "instance": "10.0.0.11:9100",
             "node": "edge-1", "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/var"},
            "Filesystem /var on edge-1 is almost full",
            "Only 4% of /var (/dev/sda1) is free on edge-1.",
        ),
        Scenario(
            "NodeMemoryLow",
            (Series(f"node_memory_MemAvailable_bytes{{{node}}}", 8e9, 1e9),
             Series(f"node_memory_MemTotal_bytes{{{node}}}", 16e9, 16e9)),
            {"severity": "warning", "service": service, "job": "node", "instance": "10.0.0.11:9100",
             "node": "edge-1"},
            "Node edge-1 is low on memory",
            "Only 6.25% of the memory of edge-1 is available; the kernel may kill the engine.",
        ),
    ]
    for job in profile.expected_jobs:
        others = [j for j in profile.expected_jobs if j != job]
        scenarios.append(Scenario(
            "ScrapeJobAbsent",
            (Series(f'up{{job="{job}",instance="10.0.0.11:1",node="edge-1"}}', 1, None),
             *(Series(f'up{{job="{j}",instance="10.0.0.11:1",node="edge-1"}}', 1, 1)
               for j in others)),
            {"severity": "warning" if job == config.JOB_NODE else "critical", "service": service,
             "job": job},
            f"No {job} target is scraped",
            f"Prometheus has no target for job {job}: service discovery lost it. Every alert "
            "that reads this job is blind.",
            name=f"ScrapeJobAbsent fires for {job} once its last target has been gone for its "
                 "for: window",
        ))
    return _burn_scenarios(spec, profile) + scenarios


def _expr_checks(spec: ServiceSpec) -> list[ExprCheck]:
    api = 'job="triptyque-gateway",instance="10.0.0.11:8080",node="edge-1"'
    ttft = "triptyque_gateway_time_to_first_token_seconds"
    duration = "triptyque_gateway_request_duration_seconds"
    slow_ttft = f"{spec.slo.ttft_p95_seconds:g}"
    slow_latency = f"{spec.slo.latency_p95_seconds:g}"
    chat = 'route="/v1/chat/completions"'
    admin = 'route="/admin/kill"'
    return [
        ExprCheck(
            "availability errors count 5xx answers and broken streams of API routes only",
            counters={
                f'triptyque_gateway_requests_total{{{api},{chat},status="200",key="app"}}': 90,
                f'triptyque_gateway_requests_total{{{api},{chat},status="503",key="app"}}': 6,
                f'triptyque_gateway_requests_total{{{api},{chat},status="429",key="app"}}': 4,
                f'triptyque_gateway_requests_total{{{api},{admin},status="500",key="ops"}}': 50,
                f'triptyque_gateway_streams_cut_total{{{api},reason="upstream"}}': 2,
                f'triptyque_gateway_streams_cut_total{{{api},reason="timeout"}}': 2,
                f'triptyque_gateway_streams_cut_total{{{api},reason="kill_switch"}}': 7,
            },
            expr=f'{rules.SLO_ERRORS}5m{{slo="availability"}}',
            labels={"service": spec.name, "slo": "availability"},
            value=0.1,
        ),
        ExprCheck(
            "availability errors are zero, not missing, when nothing failed",
            counters={f'triptyque_gateway_requests_total{{{api},{chat},status="200",key="app"}}': 5},
            expr=f'{rules.SLO_ERRORS}1h{{slo="availability"}}',
            labels={"service": spec.name, "slo": "availability"},
            value=0,
        ),
        ExprCheck(
            f"time-to-first-token errors are the streams slower than {slow_ttft}s",
            counters={
                f'{ttft}_bucket{{{api},{chat},le="1.0"}}': 50,
                f'{ttft}_bucket{{{api},{chat},le="{float(spec.slo.ttft_p95_seconds)!r}"}}': 75,
                f'{ttft}_bucket{{{api},{chat},le="+Inf"}}': 100,
                f'{ttft}_count{{{api},{chat}}}': 100,
                f'{ttft}_bucket{{{api},route="other",le="+Inf"}}': 100,
                f'{ttft}_count{{{api},route="other"}}': 100,
            },
            expr=f'{rules.SLO_ERRORS}30m{{slo="ttft"}}',
            labels={"service": spec.name, "slo": "ttft"},
            value=0.25,
        ),
        ExprCheck(
            f"latency errors are the API requests slower than {slow_latency}s",
            counters={
                f'{duration}_bucket{{{api},{chat},le="{spec.slo.latency_p95_seconds:g}"}}': 50,
                f'{duration}_bucket{{{api},{chat},le="+Inf"}}': 100,
                f'{duration}_count{{{api},{chat}}}': 100,
                f'{duration}_bucket{{{api},{admin},le="+Inf"}}': 10,
                f'{duration}_count{{{api},{admin}}}': 10,
            },
            expr=f'{rules.SLO_ERRORS}6h{{slo="latency"}}',
            labels={"service": spec.name, "slo": "latency"},
            value=0.5,
        ),
        ExprCheck(
            "gateway concurrency is in-flight requests over the configured limit",
            counters={},
            gauges={f"triptyque_gateway_in_flight_requests{{{api}}}": 4,
                    f"triptyque_gateway_max_concurrent_requests{{{api}}}": 16},
            expr="instance:triptyque_gateway_concurrency:ratio",
            labels={"job": "triptyque-gateway", "instance": "10.0.0.11:8080", "node": "edge-1"},
            value=0.25,
        ),
    ]


def _duration(seconds: float) -> str:
    """210 -> "3m30s", the way Prometheus writes durations."""
    rest, parts = round(seconds), []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def _alert_group(
    scenarios: list[tuple[Scenario, dict[str, Any]]], profile: Profile, name: str
) -> dict[str, Any]:
    """One promtool test group for scenarios that share a ``for:`` window."""
    holds = {rule["for"] for _, rule in scenarios}
    if len(holds) != 1:
        raise ValueError(f"{name!r} mixes for: windows {sorted(holds)}")
    step = config.seconds(profile.evaluation_interval)
    hold = config.seconds(holds.pop())
    total = LEAD_IN + round(hold / step) + 2
    firing_at = LEAD_IN * step + hold
    checks = []
    for scenario, _ in scenarios:
        checks += [
            {"eval_time": _duration(firing_at - step), "alertname": scenario.alert,
             "exp_alerts": []},
            {"eval_time": _duration(firing_at), "alertname": scenario.alert, "exp_alerts": [{
                "exp_labels": scenario.labels,
                "exp_annotations": {"summary": scenario.summary,
                                    "description": scenario.description,
                                    "runbook_url": rules.runbook_url(scenario.alert)},
            }]},
        ]
    return {
        "name": name,
        "interval": profile.evaluation_interval,
        "input_series": [{"series": s.selector, "values": s.values(LEAD_IN, total)}
                         for scenario, _ in scenarios for s in scenario.series],
        "alert_rule_test": checks,
    }


def _expr_group(check: ExprCheck, profile: Profile) -> dict[str, Any]:
    step = config.seconds(profile.evaluation_interval)
    total = check.at + 1
    series = [{"series": s, "values": f"0+{_number(per_step)}x{total}"}
              for s, per_step in check.counters.items()]
    series += [{"series": s, "values": f"{_number(v)}x{total}"} for s, v in check.gauges.items()]
    return {
        "name": check.name,
        "interval": profile.evaluation_interval,
        "input_series": series,
        "promql_expr_test": [{
            "expr": check.expr,
            "eval_time": _duration(check.at * step),
            "exp_samples": [{"labels": _labels_text(check.expr, check.labels), "value": check.value}],
        }],
    }


def _labels_text(expr: str, labels: dict[str, str]) -> str:
    metric = expr.split("{", 1)[0]
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


def rule_key(alert: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What tells two rules of the same alert apart: their static labels."""
    return alert, tuple(sorted(labels.items()))


def unit_tests(
    spec: ServiceSpec,
    profile: Profile,
    recording: Sequence[dict[str, Any]],
    alerting: Sequence[dict[str, Any]],
    rule_files: list[str],
) -> dict[str, Any]:
    """A promtool test file for the rule groups ``recording`` + ``alerting`` under ``profile``.

    Recording groups are evaluated first at each step (promtool's default order is
    random), so an alert on a recorded series starts on the step its inputs change.
    Each scenario is matched to the rule whose static labels its expected labels
    carry; a scenario that matches no rule, or a rule that no scenario matches, is
    an error here rather than a gap in coverage.
    """
    by_key = {rule_key(r["alert"], r["labels"]): r for g in alerting for r in g["rules"]}
    batches: dict[str, list[tuple[Scenario, dict[str, Any]]]] = {}
    covered = set()
    for scenario in _scenarios(spec, profile):
        matches = [key for key, rule in by_key.items()
                   if key[0] == scenario.alert
                   and all(scenario.labels.get(k) == v for k, v in rule["labels"].items())]
        if len(matches) != 1:
            raise ValueError(f"scenario {scenario.title()!r} matches {len(matches)} rules")
        covered.add(matches[0])
        batches.setdefault(scenario.batch or scenario.title(), []).append(
            (scenario, by_key[matches[0]]))
    missing = sorted(set(by_key) - covered)
    if missing:
        raise ValueError(f"alert rules without a scenario: {missing}")
    groups = [_alert_group(batch, profile, name) for name, batch in batches.items()]
    groups += [_expr_group(check, profile) for check in _expr_checks(spec)]
    return {
        "rule_files": rule_files,
        "evaluation_interval": profile.evaluation_interval,
        "group_eval_order": [g["name"] for g in [*recording, *alerting]],
        "tests": groups,
    }
