"""Prometheus and Alertmanager configuration documents, as plain dicts.

The local and edge renderers only choose where targets come from (static addresses
or file_sd files written from the inventory); the shape of every document is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triptyque.kinds import TargetName
from triptyque.monitoring import config
from triptyque.monitoring.config import NODE_LABEL, Profile
from triptyque.spec import ServiceSpec

WEBHOOK_RECEIVER = "webhook"


def scrape_timeout(profile: Profile) -> str:
    """Prometheus refuses a timeout longer than the interval; 10 s is its own default."""
    interval = config.seconds(profile.scrape_interval)
    return profile.scrape_interval if interval <= 10 else "10s"


def static_job(job: str, targets: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A scrape job over ``(node, "host:port")`` pairs, each labelled with its node."""
    return {
        "job_name": job,
        "static_configs": [{"targets": [address], "labels": {NODE_LABEL: node}}
                           for node, address in targets],
    }


def file_sd_job(job: str, path: str) -> dict[str, Any]:
    return {"job_name": job, "file_sd_configs": [{"files": [path]}]}


def file_sd_targets(targets: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The content of a file_sd file: one group per node so each carries its node label."""
    return [{"targets": [address], "labels": {NODE_LABEL: node}} for node, address in targets]


def prometheus_config(
    spec: ServiceSpec,
    target: TargetName,
    *,
    scrape_configs: list[dict[str, Any]],
    rule_files: Sequence[str],
    alertmanagers: Sequence[str],
) -> dict[str, Any]:
    profile = config.profile_for(target)
    document: dict[str, Any] = {
        "global": {
            "scrape_interval": profile.scrape_interval,
            "scrape_timeout": scrape_timeout(profile),
            "evaluation_interval": profile.evaluation_interval,
            "external_labels": {"service": spec.name, "target": target},
        },
        "rule_files": list(rule_files),
    }
    if alertmanagers:
        document["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    document["scrape_configs"] = scrape_configs
    return document


def alertmanager_config(target: TargetName, *, webhook_url: str) -> dict[str, Any]:
    """One webhook receiver; critical alerts repeat sooner; deliberate outages inhibit noise.

    Inhibitions: an engaged kill switch silences the availability burn it causes and
    the engine it stopped (hard kill) on the same node; an unreachable node silences
    the per-target alerts under it; a critical alert silences its warning twin.
    """
    profile = config.profile_for(target)
    return {
        "route": {
            "receiver": WEBHOOK_RECEIVER,
            "group_by": ["alertname", "service", NODE_LABEL],
            "group_wait": profile.group_wait,
            "group_interval": profile.group_interval,
            "repeat_interval": profile.repeat_interval,
            "routes": [{
                "matchers": ['severity="critical"'],
                "receiver": WEBHOOK_RECEIVER,
                "repeat_interval": profile.critical_repeat_interval,
            }],
        },
        "receivers": [{
            "name": WEBHOOK_RECEIVER,
            "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
        }],
        "inhibit_rules": [
            {
                "source_matchers": ['alertname="KillSwitchEngaged"'],
                "target_matchers": ['alertname="AvailabilityBudgetBurn"'],
                "equal": ["service"],
            },
            {
                "source_matchers": ['alertname="KillSwitchEngaged"'],
                "target_matchers": ['alertname="EngineDown"'],
                "equal": ["service", NODE_LABEL],
            },
            {
                "source_matchers": ['alertname="NodeUnreachable"'],
                "target_matchers": ['alertname=~"GatewayDown|EngineDown|ExporterDown"'],
                "equal": ["service", NODE_LABEL],
            },
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "service", NODE_LABEL, "job"],
            },
        ],
    }



def host_port(address: str, port: int) -> str:
    """``"10.0.0.5", 80`` -> ``"10.0.0.5:80"``; IPv6 addresses get their brackets."""
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{port}"
