"""Dashboards: valid against the Grafana Foundation SDK's types, laid out, on topic."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.conftest import MONITORING
from tests.support.promql import usage
from triptyque.monitoring import dashboards

BOARDS = sorted((MONITORING / "dashboards").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["panels"])


def names_read(board: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for panel in panels(board):
        for target in panel.get("targets", []):
            names |= usage(target["expr"]).names
    return names


def test_there_are_three_dashboards() -> None:
    assert [p.stem for p in BOARDS] == [
        "triptyque-capacity", "triptyque-fleet", "triptyque-overview"]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_the_dashboard_survives_a_round_trip_through_the_sdks_typed_models(path: Path) -> None:
    board = load(path)
    assert dashboards.normalise(board) == board


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a misspelt panel field": lambda p: p.update(gridpos=p.pop("gridPos")),
    "a misspelt option": lambda p: p["options"]["legend"].update(shwLegend=True),
    "a misspelt query field": lambda p: p["targets"][0].update(exp=p["targets"][0].pop("expr")),
    "a misspelt field config": lambda p: p["fieldConfig"]["defaults"].update(unti="s"),
    "a misspelt custom field config": lambda p: p["fieldConfig"]["defaults"]["custom"].update(
        lineWidht=2),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_the_round_trip_catches(mutation: str) -> None:
    board = load(MONITORING / "dashboards" / "triptyque-overview.json")
    broken = copy.deepcopy(board)
    panel = next(p for p in panels(broken) if p["type"] == "timeseries")
    MUTATIONS[mutation](panel)
    assert dashboards.normalise(broken) != broken


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_panels_have_unique_ids_a_templated_datasource_and_no_overlap(path: Path) -> None:
    board = load(path)
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    assert board["uid"] == path.stem
    assert board["templating"]["list"][0]["name"] == "datasource"
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        taken = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not taken & cells, f"{panel['title']} overlaps another panel"
        cells |= taken
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["title"] and panel["description"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))


def test_the_overview_shows_traffic_errors_latency_first_token_tokens_and_kill_switch() -> None:
    board = load(MONITORING / "dashboards" / "triptyque-overview.json")
    read = names_read(board)
    assert {"route_status:triptyque_gateway_requests:rate5m",
            "route:triptyque_gateway_request_duration_seconds:histogram_quantile",
            "route:triptyque_gateway_time_to_first_token_seconds:histogram_quantile",
            "key_kind:triptyque_gateway_tokens:rate5m",
            "triptyque_gateway_kill_switch_engaged",
            "triptyque:slo_errors:ratio_rate1h"} <= read


def test_the_fleet_view_filters_every_panel_by_node() -> None:
    board = load(MONITORING / "dashboards" / "triptyque-fleet.json")
    assert "node" in [v["name"] for v in board["templating"]["list"]]
    for panel in panels(board):
        for target in panel.get("targets", []):
            assert 'node=~"$node"' in target["expr"], panel["title"]
    assert "up" in names_read(board)


def test_the_capacity_view_shows_queue_kv_cache_and_gpu() -> None:
    board = load(MONITORING / "dashboards" / "triptyque-capacity.json")
    assert {"model_name:vllm_num_requests_waiting:sum", "instance:vllm_kv_cache_usage:ratio",
            "instance_gpu:dcgm_gpu_utilization:ratio",
            "instance_gpu:dcgm_framebuffer_used:ratio",
            "instance:triptyque_gateway_concurrency:ratio"} <= names_read(board)
