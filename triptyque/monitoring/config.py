"""The one place where selectors, thresholds and per-target timings are set.

Rules, scrape configs, Alertmanager config, dashboards and the promtool tests all
read from here; nothing else in ``triptyque.monitoring`` spells a job name, a
threshold or a ``for:`` duration. Objectives (availability, latency) are not here:
they come from the service spec's ``slo`` section.

Two profiles:

    PRODUCTION  edge, onprem, cloud: 30 s scrapes, ``for:`` windows that page a human
                only for what lasts
    LOCAL       one machine, short scrape/evaluation intervals and ``for:`` windows,
                so the end-to-end test sees KillSwitchEngaged fire in about 10 s and
                EngineDown in about 15 s
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from triptyque.kinds import TargetName

Severity = Literal["critical", "warning"]

# Scrape job names, the same on every target (Kubernetes relabels to them).
JOB_GATEWAY = "triptyque-gateway"
JOB_ENGINE = "vllm"
JOB_NODE = "node"
JOB_GPU = "dcgm"
JOBS = (JOB_GATEWAY, JOB_ENGINE, JOB_NODE, JOB_GPU)

NODE_EXPORTER_PORT = 9100
DCGM_EXPORTER_PORT = 9400

# Label every target carries: the inventory name (edge), the pod's node (Kubernetes),
# "local" on the local target.
NODE_LABEL = "node"

SELECTOR = MappingProxyType({job: f'job="{job}"' for job in JOBS})
# The routes users call; admin routes and unknown paths stay out of the SLIs.
API_ROUTES = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings")
API_ROUTE_MATCHER = 'route=~"' + "|".join(re.escape(r) for r in API_ROUTES) + '"'
SERVER_ERROR_MATCHER = 'status=~"5.."'
# Streams that ended early because the engine failed or stalled count as errors;
# streams cut by the kill switch are an operator's decision, alerted on by itself.
FAILED_STREAM_MATCHER = 'reason=~"upstream|timeout"'
# Filesystems whose fullness says nothing about the node's disk.
NODE_FILESYSTEM_MATCHER = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/run($|/.*)"'

# SLI windows recorded once; burn-rate alerts pick pairs of them.
SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
QUANTILES = (0.5, 0.95, 0.99)

RUNBOOK = "monitoring/runbook.md"


@dataclass(frozen=True)
class Thresholds:
    gateway_concurrency_ratio: float = 0.9
    engine_requests_waiting: float = 0.0
    kv_cache_usage_ratio: float = 0.9
    node_filesystem_available_ratio: float = 0.10
    node_memory_available_ratio: float = 0.10
    # Series seen within this window and gone now count as a node that stopped reporting.
    vanished_lookback: str = "1h"


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate condition (Google SRE workbook, chapter 5).

    It fires when both windows burn the error budget faster than the rate at which
    ``budget_spent`` of the whole SLO window's budget would be gone in ``long``.
    """

    long: str
    short: str
    budget_spent: float
    severity: Severity
    hold: str


PRODUCTION_BURN = (
    BurnWindow("1h", "5m", 0.02, "critical", "2m"),
    BurnWindow("6h", "30m", 0.05, "critical", "15m"),
    BurnWindow("1d", "2h", 0.10, "warning", "1h"),
    BurnWindow("3d", "6h", 0.10, "warning", "3h"),
)


@dataclass(frozen=True)
class Profile:
    """Timings for one kind of target: scrape, evaluation, ``for:`` per alert, routing."""

    name: str
    scrape_interval: str
    evaluation_interval: str
    holds: MappingProxyType[str, str]
    burn_windows: tuple[BurnWindow, ...]
    group_wait: str
    group_interval: str
    repeat_interval: str
    critical_repeat_interval: str
    # Jobs that must exist on this kind of target: absent() alerts watch them.
    expected_jobs: tuple[str, ...] = field(default=(JOB_GATEWAY, JOB_ENGINE, JOB_NODE))

    def hold(self, alert: str) -> str:
        return self.holds[alert]


PRODUCTION = Profile(
    name="production",
    scrape_interval="30s",
    evaluation_interval="30s",
    holds=MappingProxyType({
        "KillSwitchEngaged": "1m",
        "AuditLogRewound": "1m",
        "AuditWriteFailed": "1m",
        "EngineDown": "2m",
        "GatewayDown": "2m",
        "ExporterDown": "5m",
        "NodeUnreachable": "2m",
        "ScrapeJobAbsent": "5m",
        "NodeStoppedReporting": "5m",
        "GatewayConcurrencySaturated": "15m",
        "EngineQueueBacklog": "15m",
        "KVCacheNearlyFull": "15m",
        "GPUMemoryNearlyFull": "15m",
        "NodeFilesystemSpaceLow": "30m",
        "NodeMemoryLow": "15m",
    }),
    burn_windows=PRODUCTION_BURN,
    group_wait="30s",
    group_interval="5m",
    repeat_interval="12h",
    critical_repeat_interval="1h",
)

LOCAL = Profile(
    name="local",
    scrape_interval="2s",
    evaluation_interval="2s",
    holds=MappingProxyType({
        "KillSwitchEngaged": "4s",
        "AuditLogRewound": "4s",
        "AuditWriteFailed": "4s",
        "EngineDown": "10s",
        "GatewayDown": "10s",
        "ExporterDown": "10s",
        "NodeUnreachable": "10s",
        # Prometheus syncs its targets 5 s after start: no absent() alert before they report.
        "ScrapeJobAbsent": "20s",
        "NodeStoppedReporting": "20s",
        "GatewayConcurrencySaturated": "30s",
        "EngineQueueBacklog": "30s",
        "KVCacheNearlyFull": "30s",
        "GPUMemoryNearlyFull": "30s",
        "NodeFilesystemSpaceLow": "30s",
        "NodeMemoryLow": "30s",
    }),
    burn_windows=tuple(
        BurnWindow(w.long, w.short, w.budget_spent, w.severity, hold)
        for w, hold in zip(PRODUCTION_BURN, ("10s", "30s", "1m", "2m"), strict=True)
    ),
    group_wait="1s",
    group_interval="2s",
    repeat_interval="1h",
    critical_repeat_interval="1h",
    expected_jobs=(JOB_GATEWAY, JOB_ENGINE),
)

PROFILES: MappingProxyType[TargetName, Profile] = MappingProxyType({
    "local": LOCAL,
    "edge": PRODUCTION,
    "onprem": PRODUCTION,
    "cloud": PRODUCTION,
    "cloud-vm": PRODUCTION,
})

# The checked-in files under monitoring/ are rendered for this target; the other
# production targets must render the same (a test says so).
CHECKED_IN_TARGET: TargetName = "edge"


def profile_for(target: TargetName | None) -> Profile:
    return PROFILES[target or CHECKED_IN_TARGET]


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """``"2m"`` -> 120.0; the single-unit Prometheus durations used here."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"not a single-unit Prometheus duration: {duration!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
