"""Every PromQL expression we ship parses, and reads only series that really exist."""

from __future__ import annotations

import promql_parser
import pytest

from tests.support import ROOT
from tests.support.promql import shipped_expressions, usage
from triptyque.monitoring import config, metrics, rules
from triptyque.spec import ServiceSpec


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
