"""Grafana dashboards as code, built with the Grafana Foundation SDK.

``dashboards(spec) -> {name: dashboard JSON}``: three dashboards that read the
recording rules first and raw series only where nothing is recorded.

    triptyque-overview   traffic, errors, latency, time to first token, tokens, kill switch
    triptyque-fleet      health per node and per pod: targets up, requests, errors, memory
    triptyque-capacity   gateway concurrency, engine queue, KV cache, GPU
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from triptyque.monitoring import rules
from triptyque.monitoring.config import (
    API_ROUTE_MATCHER,
    JOB_ENGINE,
    JOB_GATEWAY,
    JOB_NODE,
    NODE_FILESYSTEM_MATCHER,
    NODE_LABEL,
    SELECTOR,
)
from triptyque.spec import ServiceSpec

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["triptyque"]
GATEWAY = SELECTOR[JOB_GATEWAY]
NODE_FILTER = f'{NODE_LABEL}=~"$node"'


class _Layout:
    """Numbers panels; the SDK's builder places them left to right, row by row."""

    def __init__(self, board: builders.Dashboard) -> None:
        self.board = board
        self.next_id = 1

    def row(self, title: str) -> None:
        self.board.with_row(builders.Row(title).id(self._id()))

    def add(self, panel: Any) -> None:
        self.board.with_panel(panel.id(self._id()).datasource(DATASOURCE))

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    return query.legend_format(legend) if legend else query


def _thresholds(*steps: tuple[float | None, str]) -> builders.ThresholdsConfig:
    return builders.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps]
    )


def _series(
    title: str, description: str, unit: str, queries: list[tuple[str, str]], *, width: int = 12,
    threshold: float | None = None, max_value: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).description(description).unit(unit).span(width).height(8)
        .line_width(1).fill_opacity(10).show_points(common.VisibilityMode.NEVER)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                 .sort(common.SortOrder.DESCENDING))
        .targets([_query(expr, legend, chr(ord("A") + i))
                  for i, (expr, legend) in enumerate(queries)])
    )
    if max_value is not None:
        panel = panel.min(0).max(max_value)
    if threshold is not None:
        panel = panel.thresholds(_thresholds((None, "green"), (threshold, "red"))).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
    return panel


def _stat(
    title: str, description: str, unit: str, expr: str, steps: list[tuple[float | None, str]],
    *, width: int = 6, mappings: list[model.ValueMap] | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel().title(title).description(description).unit(unit).span(width).height(4)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .thresholds(_thresholds(*steps))
        .with_target(_query(expr).instant())
    )
    return panel.mappings(list(mappings)) if mappings else panel


def _datasource_variable() -> builders.DatasourceVariable:
    return builders.DatasourceVariable("datasource").label("Data source").type("prometheus")


def _node_variable() -> builders.QueryVariable:
    return (
        builders.QueryVariable(NODE_LABEL).label("Node").datasource(DATASOURCE)
        .query(f'label_values(up{{job=~"{JOB_GATEWAY}|{JOB_ENGINE}|{JOB_NODE}"}}, {NODE_LABEL})')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True).include_all(True).all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def _board(uid: str, title: str, description: str) -> builders.Dashboard:
    return (
        builders.Dashboard(title).uid(uid).description(description).tags(TAGS)
        .refresh("30s").time("now-6h", "now").timezone("utc").readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(_datasource_variable())
    )


def _objective_steps(objective: float) -> list[tuple[float | None, str]]:
    return [(None, "red"), (objective, "green")]


def overview(spec: ServiceSpec) -> builders.Dashboard:
    slo = spec.slo
    board = _board("triptyque-overview", "Triptyque / Service overview",
                   f"{spec.name}: what users get from the gateway, against the spec's objectives.")
    layout = _Layout(board)
    good = "1 - " + rules.SLO_ERRORS
    killed = model.ValueMap(options={
        "0": model.ValueMappingResult(text="serving", color="green", index=0),
        "1": model.ValueMappingResult(text="STOPPED", color="red", index=1),
    })

    layout.row("Objectives (last hour)")
    layout.add(_stat("Availability", f"API requests answered without a 5xx; objective "
                     f"{rules.percent(slo.availability)}.", "percentunit",
                     f'{good}1h{{slo="availability"}}', _objective_steps(slo.availability)))
    layout.add(_stat("First token in time", f"Streams whose first token came within "
                     f"{slo.ttft_p95_seconds:g}s; objective 95%.", "percentunit",
                     f'{good}1h{{slo="ttft"}}', _objective_steps(rules.LATENCY_OBJECTIVE)))
    layout.add(_stat("Answered in time", f"API requests answered within "
                     f"{slo.latency_p95_seconds:g}s; objective 95%.", "percentunit",
                     f'{good}1h{{slo="latency"}}', _objective_steps(rules.LATENCY_OBJECTIVE)))
    layout.add(_stat("Kill switch", "STOPPED while any gateway refuses traffic by decision.",
                     "none", f"max(triptyque_gateway_kill_switch_engaged{{{GATEWAY}}})",
                     [(None, "green"), (1, "red")], mappings=[killed]))

    layout.row("Traffic and errors")
    layout.add(_series("Requests by route", "Answers per second, all statuses.", "reqps",
                       [("sum by (route) (route_status:triptyque_gateway_requests:rate5m)",
                         "{{route}}")]))
    layout.add(_series("Errors by status", "4xx are refusals (keys, limits, kill switch); 5xx "
                       "count against availability.", "reqps",
                       [('sum by (status) (route_status:triptyque_gateway_requests:rate5m'
                         '{status=~"4..|5.."})', "{{status}}")]))
    layout.add(_series("Error budget burn", "Share of bad events per SLI over 5 minutes and "
                       "1 hour.", "percentunit",
                       [(f"{rules.SLO_ERRORS}5m", "{{slo}} 5m"),
                        (f"{rules.SLO_ERRORS}1h", "{{slo}} 1h")]))
    layout.add(_series("Engine failures seen by the gateway", "Upstream errors and streams cut, "
                       "by reason.", "reqps",
                       [("reason:triptyque_gateway_upstream_errors:rate5m", "upstream {{reason}}"),
                        ("reason:triptyque_gateway_streams_cut:rate5m", "cut {{reason}}")]))

    layout.row("Latency")
    layout.add(_series("Request duration", f"Quantiles per route; the line is the "
                       f"{slo.latency_p95_seconds:g}s objective.", "s",
                       [(f'route:triptyque_gateway_request_duration_seconds:histogram_quantile'
                         f'{{{API_ROUTE_MATCHER}}}', "{{route}} p{{quantile}}")],
                       threshold=slo.latency_p95_seconds))
    layout.add(_series("Time to first token", f"Streaming requests; the line is the "
                       f"{slo.ttft_p95_seconds:g}s objective.", "s",
                       [("route:triptyque_gateway_time_to_first_token_seconds:histogram_quantile",
                         "{{route}} p{{quantile}}")], threshold=slo.ttft_p95_seconds))

    layout.row("Tokens")
    layout.add(_series("Tokens by kind", "Prompt and completion tokens per second.", "short",
                       [("sum by (kind) (key_kind:triptyque_gateway_tokens:rate5m)", "{{kind}}")]))
    layout.add(_series("Tokens by API key", "Per key name (never the key).", "short",
                       [("sum by (key) (key_kind:triptyque_gateway_tokens:rate5m)", "{{key}}")]))

    layout.row("Kill switch")
    layout.add(_series("Kill switch per gateway", "1 while engaged.", "none",
                       [(f"max by ({NODE_LABEL}) (triptyque_gateway_kill_switch_engaged"
                         f"{{{GATEWAY}}})", "{{node}}")], max_value=1))
    layout.add(_series("Last kill-switch change", "When each gateway's switch last moved.",
                       "dateTimeAsIso",
                       [(f"max by ({NODE_LABEL}) (triptyque_gateway_kill_switch_last_change_"
                         f"timestamp_seconds{{{GATEWAY}}}) * 1000", "{{node}}")]))
    return board


def fleet(spec: ServiceSpec) -> builders.Dashboard:
    board = _board("triptyque-fleet", "Triptyque / Fleet",
                   f"{spec.name}: every node (edge) or pod (Kubernetes), side by side.")
    board.with_variable(_node_variable())
    layout = _Layout(board)
    up_mapping = model.ValueMap(options={
        "0": model.ValueMappingResult(text="down", color="red", index=0),
        "1": model.ValueMappingResult(text="up", color="green", index=1),
    })

    layout.row("Health")
    layout.add(
        statetimeline.Panel().title("Targets up").span(24).height(8)
        .description("One line per node and job; red while Prometheus cannot scrape it.")
        .mappings([up_mapping]).thresholds(_thresholds((None, "red"), (1, "green")))
        .show_value(common.VisibilityMode.NEVER)
        .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(False))
        .with_target(_query(f'max by ({NODE_LABEL}, job) (up{{job=~"{JOB_GATEWAY}|{JOB_ENGINE}|'
                            f'{JOB_NODE}",{NODE_FILTER}}})', "{{node}} {{job}}"))
    )
    layout.add(_series("Kill switch", "1 where the gateway refuses traffic by decision.", "none",
                       [(f"triptyque_gateway_kill_switch_engaged{{{GATEWAY},{NODE_FILTER}}}",
                         "{{node}}")], max_value=1))
    layout.add(_series("Gateway version", "Build info per gateway: a mixed fleet shows here.",
                       "none", [(f"count by (version, spec_hash) (triptyque_gateway_build_info"
                                 f"{{{GATEWAY},{NODE_FILTER}}})", "{{version}} {{spec_hash}}")]))

    layout.row("Serving")
    layout.add(_series("Requests per node", "All answers per second.", "reqps",
                       [(f"instance:triptyque_gateway_requests:rate5m{{{NODE_FILTER}}}",
                         "{{node}} {{instance}}")]))
    layout.add(_series("5xx per node", "Server errors per second.", "reqps",
                       [(f"instance:triptyque_gateway_server_errors:rate5m{{{NODE_FILTER}}}",
                         "{{node}} {{instance}}")]))
    layout.add(_series("In-flight requests", "Requests admitted and not finished.", "short",
                       [(f"triptyque_gateway_in_flight_requests{{{GATEWAY},{NODE_FILTER}}}",
                         "{{node}}")]))
    layout.add(_series("Engine requests", "Running and waiting in vLLM, per node.", "short",
                       [(f'sum by ({NODE_LABEL}) (vllm:num_requests_running{{{SELECTOR[JOB_ENGINE]},'
                         f'{NODE_FILTER}}})', "{{node}} running"),
                        (f'sum by ({NODE_LABEL}) (vllm:num_requests_waiting{{{SELECTOR[JOB_ENGINE]},'
                         f'{NODE_FILTER}}})', "{{node}} waiting")]))

    layout.row("Node")
    layout.add(_series("Memory available", "Share of memory the kernel can still hand out.",
                       "percentunit", [(f"instance:node_memory_available:ratio{{{NODE_FILTER}}}",
                                        "{{node}}")], max_value=1))
    fs = f"{SELECTOR[JOB_NODE]},{NODE_FILESYSTEM_MATCHER},{NODE_FILTER}"
    layout.add(_series("Filesystem free", "Per mount point.", "percentunit",
                       [(f"node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}",
                         "{{node}} {{mountpoint}}")], max_value=1))
    return board


def capacity(spec: ServiceSpec) -> builders.Dashboard:
    limit = spec.gateway.limits.max_concurrent_requests
    board = _board("triptyque-capacity", "Triptyque / Capacity",
                   f"{spec.name}: how close the gateway, the engine and the GPUs are to full.")
    layout = _Layout(board)

    layout.row("Gateway")
    layout.add(_series("Concurrency used", f"In-flight over the limit ({limit} in the spec); "
                       "at 100% clients get 429.", "percentunit",
                       [("instance:triptyque_gateway_concurrency:ratio", "{{node}} {{instance}}")],
                       threshold=0.9, max_value=1))
    layout.add(_series("Refused for capacity", "429 answers per second.", "reqps",
                       [('sum by (route) (route_status:triptyque_gateway_requests:rate5m'
                         '{status="429"})', "{{route}}")]))

    layout.row("Engine")
    layout.add(_series("Queue", "Requests running and waiting in vLLM.", "short",
                       [("model_name:vllm_num_requests_running:sum", "running"),
                        ("model_name:vllm_num_requests_waiting:sum", "waiting")]))
    layout.add(_series("KV cache used", "vLLM preempts requests when it is full.", "percentunit",
                       [("instance:vllm_kv_cache_usage:ratio", "{{node}} {{instance}}")],
                       threshold=0.9, max_value=1))
    layout.add(_series("Engine tokens", "Prompt and generated tokens per second.", "short",
                       [("model_name:vllm_prompt_tokens:rate5m", "prompt"),
                        ("model_name:vllm_generation_tokens:rate5m", "generation")]))
    layout.add(_series("Engine latency", "Time to first token and end to end, inside vLLM.", "s",
                       [("model_name:vllm_time_to_first_token_seconds:histogram_quantile",
                         "first token p{{quantile}}"),
                        ("model_name:vllm_e2e_request_latency_seconds:histogram_quantile",
                         "end to end p{{quantile}}")]))

    layout.row("GPU (DCGM exporter; empty without a GPU)")
    layout.add(_series("GPU utilisation", "Per card.", "percentunit",
                       [("instance_gpu:dcgm_gpu_utilization:ratio", "{{node}} GPU {{gpu}}")],
                       max_value=1))
    layout.add(_series("GPU memory used", f"vLLM reserves "
                       f"{rules.percent(spec.engine.gpu_memory_utilization)} of each card.", "percentunit",
                       [("instance_gpu:dcgm_framebuffer_used:ratio", "{{node}} GPU {{gpu}}")],
                       max_value=1))
    return board


def encode(board: model.Dashboard) -> dict[str, Any]:
    return dict(json.loads(json.dumps(board, cls=JSONEncoder)))


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Decode with the SDK's typed models (panel options included) and encode again.

    Fields the models do not know are dropped on the way, so a dashboard that
    comes back unchanged holds only what Grafana's schema defines.
    """
    register_default_plugins()
    return encode(model.Dashboard.from_json(data))


def to_dict(board: builders.Dashboard) -> dict[str, Any]:
    return normalise(encode(board.build()))


def dashboards(spec: ServiceSpec) -> dict[str, dict[str, Any]]:
    return {
        "triptyque-overview": to_dict(overview(spec)),
        "triptyque-fleet": to_dict(fleet(spec)),
        "triptyque-capacity": to_dict(capacity(spec)),
    }
