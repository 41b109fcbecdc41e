"""Total cost of ownership over the scenario's horizon (24 months by default), per option.

Pure functions of (scenario, figures, FTE): no I/O. Each option is a list of line items,
each with its upfront (capex, paid in month 1) and monthly amounts, the figure ids it
used and its formula written out with the numbers, so every total can be re-done by hand.

Sizing (onprem, cloud): GPUs = max(1, ceil(peak concurrency / concurrency per GPU),
ceil(average output tokens/s during service hours / tokens/s per GPU)). A provisioned
service keeps at least one GPU even with no traffic: that is the reservation.

Utilisation: the scenario's ``gpu_utilisation`` when given, else what the traffic
implies: output tokens / (GPU capacity x powered hours). It sets the power draw
(idle fraction + (1 - idle fraction) x utilisation of the busy draw).

Two totals: ``tco_cash`` (capex paid upfront plus every monthly amount) and
``tco_economic`` (capex spread over its depreciation life, the part within the
horizon). Cost per million tokens is reservation-based: the economic TCO divided by
the tokens actually served, the GPU being paid whether used or not (llm-d PR #1646,
OpenCost PR #3845); never usage-based.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from triptyque.burden.figures import Figures
from triptyque.burden.scenario import Option, Scenario

ROLES = ("sre", "mlops", "support")
ROLE_COST = {"sre": "people.sre.loaded_eur_year", "mlops": "people.mlops.loaded_eur_year",
             "support": "people.support.loaded_eur_year"}
USD_FIGURES = {"gpu.L4.card_usd", "gpu.H100-SXM.card_usd", "edge.device_usd"}


@dataclass
class LineItem:
    name: str
    category: str
    upfront: float
    monthly: float
    figures: list[str]
    formula: str
    estimate: bool = False


@dataclass
class OptionCost:
    option: Option
    horizon_months: int
    depreciation_months: int
    sizing: dict[str, float]
    items: list[LineItem]
    fte: dict[str, float]
    total_tokens: float
    notes: list[str] = field(default_factory=list)

    @property
    def upfront(self) -> float:
        return sum(i.upfront for i in self.items)

    @property
    def monthly(self) -> float:
        return sum(i.monthly for i in self.items)

    @property
    def tco_cash(self) -> float:
        return self.upfront + self.monthly * self.horizon_months

    @property
    def tco_economic(self) -> float:
        share = min(self.horizon_months, self.depreciation_months) / self.depreciation_months \
            if self.depreciation_months else 1.0
        return self.upfront * share + self.monthly * self.horizon_months

    @property
    def residual_book_value(self) -> float:
        return self.upfront - (self.tco_economic - self.monthly * self.horizon_months)

    @property
    def cost_per_million_tokens(self) -> float | None:
        return self.tco_economic / (self.total_tokens / 1e6) if self.total_tokens else None

    def cumulative_cash(self) -> list[float]:
        return [self.upfront + self.monthly * month for month in range(1, self.horizon_months + 1)]

    def by_category(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.category] = totals.get(item.category, 0.0) + item.upfront + item.monthly * self.horizon_months
        return totals

    @property
    def estimate(self) -> bool:
        return any(i.estimate for i in self.items)

    def as_dict(self) -> dict[str, Any]:
        return {
            "option": self.option, "horizon_months": self.horizon_months,
            "depreciation_months": self.depreciation_months, "sizing": self.sizing,
            "items": [asdict(i) for i in self.items], "fte": self.fte,
            "upfront": self.upfront, "monthly": self.monthly, "tco_cash": self.tco_cash,
            "tco_economic": self.tco_economic, "residual_book_value": self.residual_book_value,
            "cost_per_million_tokens": self.cost_per_million_tokens,
            "cumulative_cash": self.cumulative_cash(), "estimate": self.estimate, "notes": self.notes,
        }


class _Items:
    """Collects line items, reading figures through one place so their ids are kept."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.items: list[LineItem] = []

    def v(self, figure_id: str) -> float:
        value = self.figures.value(figure_id)
        return value * self.figures.value("fx.usd_eur") if figure_id in USD_FIGURES else value

    def add(self, name: str, category: str, *, upfront: float = 0.0, monthly: float = 0.0,
            figures: list[str], formula: str) -> None:
        ids = [*figures, *(["fx.usd_eur"] if USD_FIGURES & set(figures) else [])]
        estimate = any(self.figures.figure(i).is_estimate for i in ids)
        self.items.append(LineItem(name, category, upfront, monthly, ids, formula, estimate))


def _people(items: _Items, fte: dict[str, float]) -> None:
    for role in ROLES:
        amount = fte.get(role, 0.0)
        if amount:
            cost = items.v(ROLE_COST[role])
            items.add(f"people ({role})", "people", monthly=amount * cost / 12, figures=[ROLE_COST[role]],
                      formula=f"{amount:.3f} FTE x {cost:,.0f} EUR/year / 12")


def _gpus_needed(s: Scenario, items: _Items) -> tuple[int, dict[str, float]]:
    tps = items.v(f"gpu.{s.gpu_type}.output_tokens_per_second")
    conc = items.v("gpu.max_concurrency")
    avg_tps = s.traffic.output_tokens_per_month / (s.service.hours_per_month * 3600)
    for_peak = math.ceil(s.traffic.peak_concurrency / conc)
    for_volume = math.ceil(avg_tps / tps)
    gpus = max(1, for_peak, for_volume)
    return gpus, {"gpus": gpus, "gpus_for_peak": for_peak, "gpus_for_volume": for_volume,
                  "average_output_tokens_per_second": avg_tps}


def _utilisation(s: Scenario, capacity_tokens_per_month: float) -> tuple[float, float]:
    implied = s.traffic.output_tokens_per_month / capacity_tokens_per_month if capacity_tokens_per_month else 0.0
    return (s.gpu_utilisation if s.gpu_utilisation is not None else implied), implied


def _egress(s: Scenario, items: _Items, price_id: str) -> None:
    per_token = items.v("traffic.egress_bytes_per_output_token")
    gigabytes = s.traffic.output_tokens_per_month * per_token / 1e9
    price = items.v(price_id)
    items.add("egress (answers)", "egress", monthly=gigabytes * price,
              figures=["traffic.egress_bytes_per_output_token", price_id],
              formula=f"{gigabytes:,.3f} GB/month x {price} EUR/GB")


def onprem(s: Scenario, figures: Figures, fte: dict[str, float]) -> OptionCost:
    items = _Items(figures)
    hours = items.v("time.hours_per_month")
    gpus, sizing = _gpus_needed(s, items)
    t = s.gpu_type
    per_server = int(items.v(f"gpu.{t}.gpus_per_server"))
    servers = math.ceil(gpus / per_server)
    card_id = f"gpu.{t}.card_usd" if f"gpu.{t}.card_usd" in figures.items else f"gpu.{t}.card_eur"
    card, chassis = items.v(card_id), items.v(f"gpu.{t}.chassis_eur")
    items.add("servers and GPUs", "capex", upfront=servers * chassis + gpus * card,
              figures=[f"gpu.{t}.gpus_per_server", f"gpu.{t}.chassis_eur", card_id],
              formula=f"{servers} server(s) x {chassis:,.0f} EUR + {gpus} GPU(s) x {card:,.0f} EUR")
    tps = items.v(f"gpu.{t}.output_tokens_per_second")
    util, implied = _utilisation(s, gpus * tps * 3600 * hours)
    board, overhead = items.v(f"gpu.{t}.board_w"), items.v("onprem.server_overhead_w")
    idle, pue, price = items.v("power.idle_fraction"), items.v("onprem.pue"), items.v("power.onprem.eur_per_kwh")
    busy_w = servers * overhead + gpus * board
    draw_w = busy_w * (idle + (1 - idle) * util)
    kwh = draw_w / 1000 * hours * pue
    items.add("power", "power", monthly=kwh * price,
              figures=[f"gpu.{t}.board_w", "onprem.server_overhead_w", "power.idle_fraction", "onprem.pue",
                       "power.onprem.eur_per_kwh", "time.hours_per_month"],
              formula=f"({servers} x {overhead:.0f} W + {gpus} x {board:.0f} W) x ({idle} + {1 - idle:.3f} x "
                      f"{util:.4f}) = {draw_w:,.1f} W x {hours:.0f} h x PUE {pue} = {kwh:,.1f} kWh x {price} EUR/kWh")
    racks = math.ceil(servers / items.v("onprem.servers_per_rack"))
    rack = items.v("onprem.colocation_eur_per_rack_month")
    items.add("hosting (colocation)", "hosting", monthly=racks * rack,
              figures=["onprem.servers_per_rack", "onprem.colocation_eur_per_rack_month"],
              formula=f"{racks} rack(s) x {rack:,.0f} EUR/month")
    _egress(s, items, "onprem.egress_eur_per_gb")
    _people(items, fte)
    months = int(items.v("onprem.depreciation_years") * 12)
    sizing |= {"servers": servers, "racks": racks, "utilisation": util, "implied_utilisation": implied}
    return OptionCost("onprem", s.horizon_months, months, sizing, items.items, fte, _tokens(s),
                      ["The Kubernetes control plane is the existing cluster's: its machines are not counted; "
                       "operating it is in the people line."])


def cloud(s: Scenario, figures: Figures, fte: dict[str, float]) -> OptionCost:
    items = _Items(figures)
    hours = items.v("time.hours_per_month")
    gpus, sizing = _gpus_needed(s, items)
    t = s.gpu_type
    per_node = int(items.v(f"cloud.{t}.gpus_per_node"))
    nodes = math.ceil(gpus / per_node)
    price = items.v(f"cloud.{t}.node_eur_per_hour")
    if s.cloud.always_on:
        billed = hours
        how = f"{hours:.0f} h (always on)"
        used = [f"cloud.{t}.gpus_per_node", f"cloud.{t}.node_eur_per_hour", "time.hours_per_month"]
    else:
        boot = items.v("cloud.gpu_node_boot_minutes")
        minutes = math.ceil(s.service.hours_per_day * 60 + boot)
        billed = min(hours, s.service.days_per_month * minutes / 60)
        how = (f"{s.service.days_per_month:g} sessions x {minutes} min (service {s.service.hours_per_day:g} h "
               f"+ {boot:g} min boot, billed per minute) = {billed:,.2f} h")
        used = [f"cloud.{t}.gpus_per_node", f"cloud.{t}.node_eur_per_hour", "cloud.gpu_node_boot_minutes",
                "time.hours_per_month"]
    items.add("GPU nodes (billed per minute)", "cloud", monthly=nodes * billed * price, figures=used,
              formula=f"{nodes} node(s) x {how} x {price} EUR/h")
    system_nodes, system_price = items.v("cloud.system_nodes"), items.v("cloud.system_node_eur_per_hour")
    items.add("system pool", "cloud", monthly=system_nodes * hours * system_price,
              figures=["cloud.system_nodes", "cloud.system_node_eur_per_hour", "time.hours_per_month"],
              formula=f"{system_nodes:g} node(s) x {hours:.0f} h x {system_price} EUR/h")
    plane_id = f"cloud.control_plane.{s.cloud.control_plane}_eur_per_hour"
    plane = items.v(plane_id)
    items.add(f"control plane ({s.cloud.control_plane})", "control_plane", monthly=plane * hours,
              figures=[plane_id, "time.hours_per_month"], formula=f"{plane} EUR/h x {hours:.0f} h")
    _egress(s, items, "cloud.egress_eur_per_gb")
    _people(items, fte)
    tps = items.v(f"gpu.{t}.output_tokens_per_second")
    util, implied = _utilisation(s, gpus * tps * 3600 * billed)
    sizing |= {"nodes": nodes, "billed_hours_per_node_month": billed, "utilisation": util,
               "implied_utilisation": implied}
    return OptionCost("cloud", s.horizon_months, 0, sizing, items.items, fte, _tokens(s),
                      ["Block storage for the model cache and the load balancer are not counted "
                       "(no sourced figure yet)."])


def edge(s: Scenario, figures: Figures, fte: dict[str, float]) -> OptionCost:
    items = _Items(figures)
    hours = items.v("time.hours_per_month")
    sites = s.edge.sites
    tps, conc = items.v("edge.device_output_tokens_per_second"), items.v("edge.device_max_concurrency")
    site_peak = math.ceil(s.traffic.peak_concurrency / sites)
    site_tps = s.traffic.output_tokens_per_month / (s.service.hours_per_month * 3600) / sites
    per_site = max(1, math.ceil(site_peak / conc), math.ceil(site_tps / tps))
    devices = sites * per_site
    device = items.v("edge.device_usd")
    items.add("edge devices", "capex", upfront=devices * device, figures=["edge.device_usd"],
              formula=f"{sites} site(s) x {per_site} device(s) x {device:,.2f} EUR")
    util, implied = _utilisation(s, devices * tps * 3600 * hours)
    busy, idle = items.v("edge.device_busy_w"), items.v("edge.device_idle_w")
    pue, price = items.v("edge.pue"), items.v("power.edge.eur_per_kwh")
    draw_w = devices * (idle + (busy - idle) * util)
    kwh = draw_w / 1000 * hours * pue
    items.add("power", "power", monthly=kwh * price,
              figures=["edge.device_busy_w", "edge.device_idle_w", "edge.pue", "power.edge.eur_per_kwh",
                       "time.hours_per_month"],
              formula=f"{devices} x ({idle:g} W + {busy - idle:g} W x {util:.4f}) = {draw_w:,.1f} W x "
                      f"{hours:.0f} h x PUE {pue} = {kwh:,.2f} kWh x {price} EUR/kWh")
    _people(items, fte)
    months = int(items.v("edge.depreciation_years") * 12)
    sizing = {"sites": sites, "devices_per_site": per_site, "devices": devices, "site_peak_concurrency": site_peak,
              "utilisation": util, "implied_utilisation": implied}
    return OptionCost("edge", s.horizon_months, months, sizing, items.items, fte, _tokens(s),
                      ["Devices sit on the sites' premises: no hosting is charged; their network is the site's."])


def buy(s: Scenario, figures: Figures, fte: dict[str, float]) -> OptionCost:
    items = _Items(figures)
    api = s.buy_api
    p_in, p_out = items.v(f"buy.{api}.eur_per_m_input"), items.v(f"buy.{api}.eur_per_m_output")
    m_in, m_out = s.traffic.input_tokens_per_month / 1e6, s.traffic.output_tokens_per_month / 1e6
    items.add(f"token API ({api})", "api", monthly=m_in * p_in + m_out * p_out,
              figures=[f"buy.{api}.eur_per_m_input", f"buy.{api}.eur_per_m_output"],
              formula=f"{m_in:,.3f} M in x {p_in} + {m_out:,.3f} M out x {p_out} EUR")
    _people(items, fte)
    return OptionCost("buy", s.horizon_months, 0, {}, items.items, fte, _tokens(s),
                      ["Priced on the same volume; the provider carries the reservation."])


def _tokens(s: Scenario) -> float:
    return float((s.traffic.input_tokens_per_month + s.traffic.output_tokens_per_month) * s.horizon_months)


BUILDERS = {"edge": edge, "onprem": onprem, "cloud": cloud, "buy": buy}


def scale_hours(option: Option, s: Scenario, figures: Figures) -> dict[str, float]:
    """Yearly hours that grow with the fleet the scenario needs: GPU servers, edge sites."""
    if option == "onprem":
        gpus, _ = _gpus_needed(s, _Items(figures))
        servers = math.ceil(gpus / figures.value(f"gpu.{s.gpu_type}.gpus_per_server"))
        return {"sre": servers * figures.value("burden.hours_per_gpu_server_year")}
    if option == "edge":
        return {"support": s.edge.sites * figures.value("edge.support_hours_per_site_year")}
    return {}


def people_fte(s: Scenario, figures: Figures, option: Option, estimate: dict[str, float] | None) -> dict[str, float]:
    """The FTE per role an option is charged: the burden estimate, the scenario's figure, on-call."""
    base = {"mlops": figures.value("buy.fte")} if option == "buy" else dict(estimate or {})
    if option in s.people.fte:
        total = sum(base.values())
        wanted = s.people.fte[option]
        base = {r: v * wanted / total for r, v in base.items()} if total else {"sre": wanted}
    if s.people.on_call_24x7 and option != "buy":
        base["sre"] = base.get("sre", 0.0) + figures.value("people.oncall_24x7_fte")
    return base


def compute(s: Scenario, figures: Figures, fte: dict[str, dict[str, float]]) -> dict[Option, OptionCost]:
    """Every compared option of the scenario; ``fte`` is the burden estimate per option and role."""
    return {option: BUILDERS[option](s, figures, people_fte(s, figures, option, fte.get(option)))
            for option in s.compared}
