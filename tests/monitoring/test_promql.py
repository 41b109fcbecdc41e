"""Every PromQL expression we ship parses, and reads only series that really exist."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import promql_parser
import pytest

from tests.monitoring.conftest import ROOT
from triptyque.monitoring import config, dashboards, metrics, rules
from triptyque.spec import ServiceSpec, TargetName

COUNTING_FUNCTIONS = {"rate", "irate", "increase", "resets"}


@dataclass
class Usage:
    """What one expression reads."""

    names: set[str] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)
    unscoped: set[str] = field(default_factory=set)


def usage(expr: str) -> Usage:
    found = Usage()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.names.add(node.name)
            if not any(m.name == "job" for m in node.matchers.matchers):
                found.unscoped.add(node.name)
        if isinstance(node, promql_parser.Call) and node.func.name in COUNTING_FUNCTIONS:
            found.counted.add(node.args[0].vector_selector.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def shipped_expressions(spec: ServiceSpec, local_spec: ServiceSpec) -> dict[str, str]:
    """Where -> expression, for every rule of every target and every dashboard query."""
    out = {}
    targets: list[tuple[TargetName, ServiceSpec]] = [
        ("local", local_spec), ("edge", spec), ("onprem", spec)]
    for target, target_spec in targets:
        for group in rules.rule_groups(target_spec, target):
            for i, rule in enumerate(group["rules"]):
                name = rule.get("record") or rule.get("alert")
                out[f"{target} {group['name']}[{i}] {name}"] = rule["expr"]
    for board_name, board in dashboards.dashboards(spec).items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out[f"{board_name} '{panel['title']}' {target['refId']}"] = target["expr"]
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                selector = re.fullmatch(r"label_values\((.+), \w+\)", variable["query"])
                assert selector, variable["query"]
                out[f"{board_name} ${variable['name']}"] = selector.group(1)
    return out


@pytest.fixture(scope="module")
def expressions(spec: ServiceSpec, local_spec: ServiceSpec) -> dict[str, str]:
    return shipped_expressions(spec, local_spec)


@pytest.fixture(scope="module")
def recorded(spec: ServiceSpec) -> set[str]:
    return {r["record"] for g in rules.recording_groups(spec) for r in g["rules"]}


@pytest.fixture(scope="module")
def known() -> dict[str, str]:
    return metrics.known_names(ROOT)


def test_every_expression_parses(expressions: dict[str, str]) -> None:
    problems = {}
    for where, expr in expressions.items():
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            problems[where] = str(exc)
    assert problems == {}
    assert len(expressions) > 150


def test_the_parser_rejects_what_prometheus_would() -> None:
    for broken in ("sum(rate(x[5m])", "rate(x)", "histogram_quantile(0.9)", "nofunc(x)"):
        with pytest.raises(ValueError):
            promql_parser.parse(broken)


def test_every_series_read_is_exposed_by_an_exporter_or_recorded_by_a_rule(
    expressions: dict[str, str], recorded: set[str], known: dict[str, str]
) -> None:
    unknown = {where: sorted(usage(expr).names - recorded - set(known))
               for where, expr in expressions.items()}
    assert {k: v for k, v in unknown.items() if v} == {}


def test_rates_are_taken_only_of_counters_and_histogram_series(
    expressions: dict[str, str], known: dict[str, str]
) -> None:
    wrong = {}
    for where, expr in expressions.items():
        for name in usage(expr).counted:
            if known.get(name) not in ("counter", "histogram") or name.endswith("_created"):
                wrong[where] = f"{name} is a {known.get(name)}"
    assert wrong == {}


def test_every_raw_series_is_selected_by_scrape_job(
    expressions: dict[str, str], recorded: set[str]
) -> None:
    """Selectors come from config: a raw series read without a job matcher escaped it."""
    unscoped = {where: sorted(usage(expr).unscoped - recorded)
                for where, expr in expressions.items()}
    assert {k: v for k, v in unscoped.items() if v} == {}


def test_every_recorded_series_is_read_by_an_alert_or_a_dashboard(
    expressions: dict[str, str], recorded: set[str]
) -> None:
    read = set()
    for where, expr in expressions.items():
        if " triptyque.sli[" not in where and ".serving[" not in where:
            read |= usage(expr).names
    assert recorded - read == set()


def test_the_name_check_catches_a_metric_that_does_not_exist(known: dict[str, str]) -> None:
    assert "vllm:num_requests_waiting" in known
    assert "vllm:num_requests_waitin" not in known
    assert usage('rate(vllm:gpu_cache_usage_perc{job="vllm"}[5m])').names - set(known) == {
        "vllm:gpu_cache_usage_perc"}


def test_the_job_names_in_the_rules_are_the_scrape_jobs() -> None:
    assert config.JOBS == ("triptyque-gateway", "vllm", "node", "dcgm")
