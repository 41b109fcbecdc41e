"""The checked-in metric lists match what the real processes expose today."""

from __future__ import annotations

import pytest

from tests.monitoring.conftest import run, tool
from tests.support import ROOT
from tests.support.promql import shipped_expressions, usage
from triptyque.monitoring import capture, metrics
from triptyque.spec import ServiceSpec


def used_names(spec: ServiceSpec, local_spec: ServiceSpec) -> set[str]:
    names: set[str] = set()
    for expr in shipped_expressions(spec, local_spec).values():
        names |= usage(expr).names
    return names


def checked_in(source: str) -> dict[str, str]:
    return metrics.read_list(metrics.list_path(ROOT, source))


def assert_still_exposed(source: str, fresh: dict[str, str], used: set[str]) -> None:
    listed = checked_in(source)
    relied_on = used & set(listed)
    assert relied_on, f"no name from {source} is used: wrong list?"
    missing = sorted(relied_on - set(fresh))
    assert missing == [], (f"{source} no longer exposes {missing}; fix the rules, then run "
                           f"python -m triptyque.monitoring capture {source}")


def test_parsing_an_exposition_expands_histograms_and_keeps_unused_families() -> None:
    text = (
        "# HELP a_seconds A.\n# TYPE a_seconds histogram\n"
        'a_seconds_bucket{le="1.0"} 1.0\na_seconds_count 1.0\na_seconds_sum 0.5\n'
        "# TYPE b counter\n"
        "# TYPE c_total counter\nc_total 3\n"
        "# TYPE vllm:d gauge\nvllm:d{x=\"1\"} 2\n"
    )
    assert metrics.parse_exposition(text) == {
        "a_seconds_bucket": "histogram", "a_seconds_count": "histogram",
        "a_seconds_sum": "histogram", "b_total": "counter", "c_total": "counter",
        "vllm:d": "gauge",
    }


def test_the_gateway_list_is_what_the_gateway_exposes(
    spec: ServiceSpec, local_spec: ServiceSpec
) -> None:
    fresh = metrics.parse_exposition(capture.capture_gateway(local_spec, 0))
    assert fresh == checked_in("gateway"), "run: python -m triptyque.monitoring capture gateway"
    assert_still_exposed("gateway", fresh, used_names(spec, local_spec))


def test_promtool_finds_no_naming_problem_in_the_gateways_metrics(local_spec: ServiceSpec) -> None:
    exposition = capture.capture_gateway(local_spec, 0)
    result = run([tool("promtool"), "check", "metrics"], input=exposition)
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_exporter_still_exposes_every_node_metric_we_use(
    spec: ServiceSpec, local_spec: ServiceSpec
) -> None:
    tool("prometheus-node-exporter", "node_exporter")
    fresh = metrics.parse_exposition(capture.capture_node(local_spec, 28002))
    assert_still_exposed("node", fresh, used_names(spec, local_spec))


def test_the_static_lists_name_what_the_rules_need_from_dcgm_and_prometheus(
    spec: ServiceSpec, local_spec: ServiceSpec
) -> None:
    used = used_names(spec, local_spec)
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"} <= used & set(
        checked_in("dcgm"))
    assert "up" in used & set(checked_in("prometheus"))


@pytest.mark.e2e
def test_vllm_still_exposes_every_engine_metric_we_use(
    spec: ServiceSpec, local_spec: ServiceSpec
) -> None:
    """Starts vLLM on the CPU with the tiny model (about 30 s and 3 GB)."""
    fresh = metrics.parse_exposition(capture.capture_vllm(local_spec, 28001))
    assert_still_exposed("vllm", fresh, used_names(spec, local_spec))
