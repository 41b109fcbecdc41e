"""Prometheus metrics of one gateway, in a registry of its own (no module globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from triptyque.gateway.settings import GatewaySettings

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class GatewayMetrics:
    def __init__(self, settings: GatewaySettings) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "triptyque_gateway_requests", "Requests answered, by route, HTTP status and API key name.",
            ["route", "status", "key"], registry=r,
        )
        self.duration = Histogram(
            "triptyque_gateway_request_duration_seconds", "Time from request to the last byte sent.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            "triptyque_gateway_time_to_first_token_seconds",
            "Streaming requests: time from request to the first chunk from the engine.",
            ["route"], buckets=TTFT_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "triptyque_gateway_tokens", "Tokens reported by the engine's usage, by key and kind.",
            ["key", "kind"], registry=r,
        )
        self.in_flight = Gauge(
            "triptyque_gateway_in_flight_requests", "Requests admitted and not finished.", registry=r
        )
        self.max_concurrent = Gauge(
            "triptyque_gateway_max_concurrent_requests", "Configured concurrency limit.", registry=r
        )
        self.kill_engaged = Gauge(
            "triptyque_gateway_kill_switch_engaged", "1 while the kill switch stops serving.", registry=r
        )
        self.kill_changed = Gauge(
            "triptyque_gateway_kill_switch_last_change_timestamp_seconds",
            "Unix time of the last kill-switch change.", registry=r,
        )
        self.upstream_errors = Counter(
            "triptyque_gateway_upstream_errors", "Failed calls to the engine, by reason.",
            ["route", "reason"], registry=r,
        )
        self.streams_cut = Counter(
            "triptyque_gateway_streams_cut", "Streams ended by the gateway before the engine finished.",
            ["reason"], registry=r,
        )
        self.audit_seq = Gauge(
            "triptyque_gateway_audit_sequence",
            "Sequence number of the last kill-switch audit entry this gateway knows "
            "(Prometheus keeps its history: a drop means the log was cut).", registry=r,
        )
        self.audit_head = Gauge(
            "triptyque_gateway_audit_head",
            "The first 13 hex digits of the last audit entry's hash, as a number.", registry=r,
        )
        self.audit_write_failures = Counter(
            "triptyque_gateway_audit_write_failures", "Kill-switch decisions that could not be recorded "
            "in the audit log or the state (the gateway then fails closed).", registry=r,
        )
        self.client_gone = Counter(
            "triptyque_gateway_client_gone", "Requests whose client hung up before the engine answered "
            "(the engine request is cancelled).", ["route"], registry=r,
        )
        self.internal_errors = Counter(
            "triptyque_gateway_internal_errors", "Requests that failed inside the gateway (answered 500).",
            registry=r,
        )
        build = Gauge(
            "triptyque_gateway_build_info", "Version and spec of this gateway.",
            ["version", "spec_hash", "target"], registry=r,
        )
        build.labels(settings.version, settings.spec_hash, settings.target).set(1)
        self.max_concurrent.set(settings.limits.max_concurrent_requests)
