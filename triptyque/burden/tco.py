"""Total cost of ownership over the scenario's horizon (24 months by default), per option.

Pure functions of (scenario, figures, FTE): no I/O. Each option is a list of line items,
each with its upfront (capex, paid in month 1) and monthly amounts, the figure ids it
used and its formula written out with the numbers, so every total can be re-done by hand.

Every option serves the scenario's model (``sizing.py``): a replica needs enough
accelerators of the option's type to hold the weights and one full context; replicas =
max(1, ceil(peak concurrency / requests per replica), ceil(average output tokens/s
during service hours / tokens/s per replica)). A provisioned service keeps at least one
replica even with no traffic: that is the reservation. An option whose hardware cannot
hold the model raises ``Unserved`` with the reason, and is not priced.

Cloud is priced from what the stack creates (``deployed.CloudDeployment``): the GPU
pool's node type, its minimum size (nodes that never go away are billed 730 h a month;
office hours only when the pool can scale to 0), the system pool at its node type's
price, the model-cache volume and the load balancer. On-prem buys whole servers of the
chosen GPU type (an HGX server comes with its 8 GPUs), pays maintenance on them, and
one facility model: colocation (its share of a rack, by space or by power, whichever
is larger, power included) or a server room (power x PUE, no rent), never both.

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

from triptyque.burden import sizing
from triptyque.burden.deployed import NODE_GPU, CloudDeployment
from triptyque.burden.figures import Figures
from triptyque.burden.scenario import Option, Scenario

ROLES = ("sre", "mlops", "support")
ROLE_COST = {"sre": "people.sre.loaded_eur_year", "mlops": "people.mlops.loaded_eur_year",
             "support": "people.support.loaded_eur_year"}
USD_FIGURES = {"gpu.L4.card_usd", "gpu.H100-SXM.server_usd", "edge.device_usd", "edge.enclosure_storage_usd"}


class Unserved(Exception):
    """This option's hardware, as configured, cannot serve the scenario's model."""

    def __init__(self, option: Option, reason: str) -> None:
        self.option, self.reason = option, reason
        super().__init__(f"{option}: {reason}")


@dataclass
class LineItem:
    name: str
    category: str
    upfront: float
    monthly: float
    figures: list[str]
    formula: str
    estimate: bool = False
    measured: str | None = None  # the ledger entry a measured line comes from


TOIL = "toil:"  # an FTE key "toil:<ledger ref>": hours a drill measured x its yearly frequency, at the SRE's rate


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
    for key, amount in fte.items():
        if key.startswith(TOIL) and amount:
            cost = items.v(ROLE_COST["sre"])
            ref = key.removeprefix(TOIL)
            items.add(f"toil measured ({ref})", "people", monthly=amount * cost / 12,
                      figures=[ROLE_COST["sre"]], formula=f"{amount:.4f} FTE x {cost:,.0f} EUR/year / 12")
            items.items[-1].measured = ref


def _average_tps(s: Scenario) -> float:
    return s.traffic.output_tokens_per_month / (s.service.hours_per_month * 3600)


def _fit(option: Option, s: Scenario, items: _Items, device: sizing.Device) -> sizing.Fit:
    found = sizing.fit(s.model, device, utilisation=items.v("gpu.memory_utilization"),
                       overhead=items.v("model.runtime_overhead_ratio"))
    if not found.ok:
        raise Unserved(option, found.formula)
    return found


def gpu_device(t: str, items: _Items, per_machine: int, machine: str) -> sizing.Device:
    return sizing.Device(machine, items.v(f"gpu.{t}.memory_gb"), items.v(f"gpu.{t}.output_tokens_per_second"),
                         items.v("model.reference_weights_gb"), items.v("gpu.max_concurrency"), per_machine)


def _sizing_ids(t: str) -> list[str]:
    return [f"gpu.{t}.memory_gb", f"gpu.{t}.output_tokens_per_second", "model.reference_weights_gb",
            "gpu.max_concurrency", "gpu.memory_utilization", "model.runtime_overhead_ratio"]


def _utilisation(s: Scenario, capacity_tokens_per_month: float) -> tuple[float, float]:
    implied = s.traffic.output_tokens_per_month / capacity_tokens_per_month if capacity_tokens_per_month else 0.0
    implied = min(implied, 1.0)
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
    t = s.gpu_type
    per_server = int(items.v(f"gpu.{t}.gpus_per_server"))
    found = _fit("onprem", s, items, gpu_device(t, items, per_server, f"{t} server"))
    count, sizing_ = sizing.replicas(found, peak_concurrency=s.traffic.peak_concurrency,
                                     average_tokens_per_second=_average_tps(s))
    per_replica = found.devices_per_replica
    replicas_per_server = per_server // per_replica
    servers = math.ceil(count / replicas_per_server)
    whole = f"gpu.{t}.server_usd" in figures.items
    if whole:
        gpus = servers * per_server
        price = items.v(f"gpu.{t}.server_usd")
        capex = servers * price
        items.add("servers (whole, GPUs included)", "capex", upfront=capex,
                  figures=[f"gpu.{t}.gpus_per_server", f"gpu.{t}.server_usd", *_sizing_ids(t)],
                  formula=f"{servers} server(s) of {per_server} GPUs x {price:,.0f} EUR ({count} replica(s) of "
                          f"{per_replica} GPU(s))")
    else:
        gpus = count * per_replica
        card_id = f"gpu.{t}.card_usd" if f"gpu.{t}.card_usd" in figures.items else f"gpu.{t}.card_eur"
        card, chassis = items.v(card_id), items.v(f"gpu.{t}.chassis_eur")
        capex = servers * chassis + gpus * card
        items.add("servers and GPUs", "capex", upfront=capex,
                  figures=[f"gpu.{t}.gpus_per_server", f"gpu.{t}.chassis_eur", card_id, *_sizing_ids(t)],
                  formula=f"{servers} server(s) x {chassis:,.0f} EUR + {gpus} GPU(s) x {card:,.0f} EUR "
                          f"({count} replica(s) of {per_replica} GPU(s))")
    maintenance = items.v("onprem.maintenance_ratio_per_year")
    items.add("maintenance (hardware support contract)", "maintenance", monthly=capex * maintenance / 12,
              figures=["onprem.maintenance_ratio_per_year"],
              formula=f"{capex:,.0f} EUR x {maintenance:g} a year / 12")
    tps = found.tokens_per_second_per_replica
    util, implied = _utilisation(s, count * tps * 3600 * hours)
    if f"gpu.{t}.server_w" in figures.items:
        server_w = items.v(f"gpu.{t}.server_w")
        busy_w = servers * server_w
        busy_ids = [f"gpu.{t}.server_w"]
        busy_formula = f"{servers} x {server_w:,.0f} W"
    else:
        board, overhead = items.v(f"gpu.{t}.board_w"), items.v("onprem.server_overhead_w")
        busy_w = servers * overhead + gpus * board
        busy_ids = [f"gpu.{t}.board_w", "onprem.server_overhead_w"]
        busy_formula = f"({servers} x {overhead:.0f} W + {gpus} x {board:.0f} W)"
    if s.onprem.facility == "colocation":
        u, rack_u = items.v(f"gpu.{t}.server_u"), items.v("onprem.rack_units")
        rack_kw, rack = items.v("onprem.rack_power_kw"), items.v("onprem.colocation_eur_per_rack_month")
        by_space, by_power = servers * u / rack_u, busy_w / 1000 / rack_kw
        share = max(by_space, by_power)
        items.add("hosting (colocation, power included)", "hosting", monthly=share * rack,
                  figures=[f"gpu.{t}.server_u", "onprem.rack_units", "onprem.rack_power_kw",
                           "onprem.colocation_eur_per_rack_month", *busy_ids],
                  formula=f"max(space {servers} x {u:g}U / {rack_u:g}U = {by_space:.3f}, power {busy_formula} = "
                          f"{busy_w / 1000:,.2f} kW / {rack_kw:g} kW = {by_power:.3f}) rack x {rack:,.0f} EUR/month")
        racks = share
    else:
        ups, switch = items.v("onprem.ups_eur_per_kw"), items.v("onprem.switch_eur")
        ports = items.v("onprem.switch_ports")
        switches = math.ceil(servers / ports)
        items.add("UPS and switch (server room)", "capex", upfront=busy_w / 1000 * ups + switches * switch,
                  figures=["onprem.ups_eur_per_kw", "onprem.switch_eur", "onprem.switch_ports", *busy_ids],
                  formula=f"{busy_formula} = {busy_w / 1000:,.2f} kW x {ups:,.0f} EUR/kW + ceil({servers} / "
                          f"{ports:g}) = {switches} switch(es) x {switch:,.0f} EUR")
        idle, pue, price = items.v("power.idle_fraction"), items.v("onprem.pue"), items.v("power.onprem.eur_per_kwh")
        draw_w = busy_w * (idle + (1 - idle) * util)
        kwh = draw_w / 1000 * hours * pue
        items.add("power (server room)", "power", monthly=kwh * price,
                  figures=[*busy_ids, "power.idle_fraction", "onprem.pue", "power.onprem.eur_per_kwh",
                           "time.hours_per_month"],
                  formula=f"{busy_formula} x ({idle} + {1 - idle:.3f} x {util:.4f}) = {draw_w:,.1f} W x "
                          f"{hours:.0f} h x PUE {pue} = {kwh:,.1f} kWh x {price} EUR/kWh")
        racks = 0.0
    _egress(s, items, "onprem.egress_eur_per_gb")
    _people(items, fte)
    months = int(items.v("onprem.depreciation_years") * 12)
    sizing_ |= {"gpus": gpus, "servers": servers, "rack_share": racks, "utilisation": util,
                "implied_utilisation": implied}
    notes = ["The Kubernetes control plane is the existing cluster's: its machines are not counted; "
             "operating it is in the people line.", found.formula]
    if s.onprem.facility == "colocation":
        notes.append("Colocation: the rack price is taken as power included, so no separate power line "
                     "(one facility model, never both).")
    return OptionCost("onprem", s.horizon_months, months, sizing_, items.items, fte, _tokens(s), notes)


def cloud(s: Scenario, figures: Figures, fte: dict[str, float], deployment: CloudDeployment) -> OptionCost:
    """The cloud option as the stack deploys it; ``Unserved`` when the stack cannot serve the model or load."""
    items = _Items(figures)
    hours = items.v("time.hours_per_month")
    d = deployment
    if d.problem:
        raise Unserved("cloud", f"the cloud stack cannot be read: {d.problem}")
    node = d.gpu_node_type
    t = NODE_GPU.get(node)
    if t is None or f"cloud.node.{node}.eur_per_hour" not in figures.items:
        raise Unserved("cloud", f"{d.source}: GPU node type {node!r} has no price in the figures "
                                f"(add cloud.node.{node}.eur_per_hour and .gpus)")
    per_node = int(items.v(f"cloud.node.{node}.gpus"))
    found = _fit("cloud", s, items, gpu_device(t, items, per_node, f"{node} node"))
    count, sizing_ = sizing.replicas(found, peak_concurrency=s.traffic.peak_concurrency,
                                     average_tokens_per_second=_average_tps(s))
    needed = math.ceil(count / (per_node // found.devices_per_replica))
    if needed > d.gpu_max:
        raise Unserved("cloud", f"{d.source}: gpuPool.maxSize {d.gpu_max} cannot hold the {needed} {node} nodes "
                                f"this traffic needs ({count} replica(s)); raise maxSize and the engine replicas")
    nodes = max(needed, d.gpu_min)
    price = items.v(f"cloud.node.{node}.eur_per_hour")
    notes = [found.formula]
    if d.gpu_min >= 1 or s.cloud.always_on:
        billed = hours
        how = (f"{hours:.0f} h (gpuPool.minSize {d.gpu_min}: always on)" if d.gpu_min >= 1
               else f"{hours:.0f} h (always on, as the scenario asks)")
        used = [f"cloud.node.{node}.gpus", f"cloud.node.{node}.eur_per_hour", "time.hours_per_month"]
        if not s.cloud.always_on:
            notes.append(f"Office hours asked (cloud.always_on: false), but {d.source} keeps gpuPool.minSize "
                         f"{d.gpu_min}: nothing scales the GPU pool to 0, so it is billed around the clock. Set "
                         "minSize 0 and scale the engine to 0 outside the service window to bill fewer hours.")
    else:
        boot = items.v("cloud.gpu_node_boot_minutes")
        minutes = math.ceil(s.service.hours_per_day * 60 + boot)
        billed = min(hours, s.service.days_per_month * minutes / 60)
        how = (f"{s.service.days_per_month:g} sessions x {minutes} min (service {s.service.hours_per_day:g} h "
               f"+ {boot:g} min boot, billed per minute) = {billed:,.2f} h (gpuPool.minSize 0)")
        used = [f"cloud.node.{node}.gpus", f"cloud.node.{node}.eur_per_hour", "cloud.gpu_node_boot_minutes",
                "time.hours_per_month"]
        notes.append(f"Office hours: {d.source} lets the GPU pool scale to 0; the engine must be scaled to 0 "
                     "outside the service window for the node to go.")
    items.add(f"GPU nodes ({node}, billed per minute)", "cloud", monthly=nodes * billed * price,
              figures=[*used, *_sizing_ids(t)], formula=f"{nodes} node(s) x {how} x {price} EUR/h")
    system_id = f"cloud.node.{d.system_node_type}.eur_per_hour"
    if system_id not in figures.items:
        raise Unserved("cloud", f"{d.source}: system pool node type {d.system_node_type!r} has no price in the "
                                f"figures (add {system_id})")
    system_price = items.v(system_id)
    items.add(f"system pool ({d.system_node_type})", "cloud", monthly=d.system_min * hours * system_price,
              figures=[system_id, "time.hours_per_month"],
              formula=f"{d.system_min} node(s) (systemPool.minSize) x {hours:.0f} h x {system_price} EUR/h")
    volume = items.v("cloud.block_storage_eur_per_gb_month")
    items.add(f"model-cache volume ({d.volume_class})", "cloud", monthly=d.volume_gb * volume,
              figures=["cloud.block_storage_eur_per_gb_month"],
              formula=f"{d.volume_gb:,.1f} GB x {volume} EUR/GB/month")
    if d.load_balancers:
        balancer = items.v("cloud.load_balancer_eur_per_month")
        items.add("load balancer", "cloud", monthly=d.load_balancers * balancer,
                  figures=["cloud.load_balancer_eur_per_month"],
                  formula=f"{d.load_balancers} x {balancer} EUR/month")
    if d.public_gateway:
        gateway_id = f"cloud.public_gateway.{d.public_gateway}.eur_per_hour"
        if gateway_id not in figures.items:
            raise Unserved("cloud", f"{d.source}: public gateway type {d.public_gateway!r} has no price in the "
                                    f"figures (add {gateway_id})")
        gateway, ip = items.v(gateway_id), items.v("cloud.flexible_ip_eur_per_hour")
        items.add(f"public gateway ({d.public_gateway}) and its IP", "cloud", monthly=hours * (gateway + ip),
                  figures=[gateway_id, "cloud.flexible_ip_eur_per_hour", "time.hours_per_month"],
                  formula=f"{hours:.0f} h x ({gateway} + {ip} EUR/h)")
    plane_id = f"cloud.control_plane.{s.cloud.control_plane}_eur_per_hour"
    plane = items.v(plane_id)
    items.add(f"control plane ({s.cloud.control_plane})", "control_plane", monthly=plane * hours,
              figures=[plane_id, "time.hours_per_month"], formula=f"{plane} EUR/h x {hours:.0f} h")
    _egress(s, items, "cloud.egress_eur_per_gb")
    _people(items, fte)
    util, implied = _utilisation(s, count * found.tokens_per_second_per_replica * 3600 * billed)
    if count > d.engine_replicas:
        notes.append(f"The stack renders {d.engine_replicas} engine replica(s); this traffic needs {count}: "
                     "priced for what it needs.")
    sizing_ |= {"nodes": nodes, "nodes_needed": needed, "billed_hours_per_node_month": billed, "utilisation": util,
                "implied_utilisation": implied}
    return OptionCost("cloud", s.horizon_months, 0, sizing_, items.items, fte, _tokens(s), notes)


def edge(s: Scenario, figures: Figures, fte: dict[str, float]) -> OptionCost:
    items = _Items(figures)
    hours = items.v("time.hours_per_month")
    sites = s.edge.sites
    device = sizing.Device("edge device", items.v("edge.device_memory_gb"),
                           items.v("edge.device_output_tokens_per_second"), items.v("edge.reference_weights_gb"),
                           items.v("edge.device_max_concurrency"), 1)
    found = _fit("edge", s, items, device)
    site_peak = math.ceil(s.traffic.peak_concurrency / sites)
    per_site, sizing_ = sizing.replicas(found, peak_concurrency=site_peak,
                                        average_tokens_per_second=_average_tps(s) / sites)
    devices = sites * per_site
    price, case = items.v("edge.device_usd"), items.v("edge.enclosure_storage_usd")
    items.add("edge devices", "capex", upfront=devices * price,
              figures=["edge.device_usd", "edge.device_memory_gb", "edge.device_output_tokens_per_second",
                       "edge.reference_weights_gb", "edge.device_max_concurrency", "gpu.memory_utilization",
                       "model.runtime_overhead_ratio"],
              formula=f"{sites} site(s) x {per_site} device(s) x {price:,.2f} EUR")
    items.add("enclosure and storage", "capex", upfront=devices * case, figures=["edge.enclosure_storage_usd"],
              formula=f"{devices} device(s) x {case:,.2f} EUR")
    ratio = items.v("edge.spare_ratio")
    spares = math.ceil(devices * ratio)
    items.add("spare devices", "capex", upfront=spares * (price + case),
              figures=["edge.spare_ratio", "edge.device_usd", "edge.enclosure_storage_usd"],
              formula=f"ceil({devices} x {ratio:g}) = {spares} spare(s) x ({price:,.2f} + {case:,.2f}) EUR")
    util, implied = _utilisation(s, devices * found.tokens_per_second_per_replica * 3600 * hours)
    busy, idle = items.v("edge.device_busy_w"), items.v("edge.device_idle_w")
    pue, kwh_price = items.v("edge.pue"), items.v("power.edge.eur_per_kwh")
    draw_w = devices * (idle + (busy - idle) * util)
    kwh = draw_w / 1000 * hours * pue
    items.add("power", "power", monthly=kwh * kwh_price,
              figures=["edge.device_busy_w", "edge.device_idle_w", "edge.pue", "power.edge.eur_per_kwh",
                       "time.hours_per_month"],
              formula=f"{devices} x ({idle:g} W + {busy - idle:g} W x {util:.4f}) = {draw_w:,.1f} W x "
                      f"{hours:.0f} h x PUE {pue} = {kwh:,.2f} kWh x {kwh_price} EUR/kWh")
    _people(items, fte)
    months = int(items.v("edge.depreciation_years") * 12)
    sizing_ |= {"sites": sites, "devices_per_site": per_site, "devices": devices, "spares": spares,
                "site_peak_concurrency": site_peak,
                "utilisation": util, "implied_utilisation": implied}
    return OptionCost("edge", s.horizon_months, months, sizing_, items.items, fte, _tokens(s),
                      ["Devices sit on the sites' premises: no hosting is charged; their network is the site's. "
                       "They are managed by the project's Ansible playbooks over SSH: no management licence.",
                       found.formula])


def buy(s: Scenario, figures: Figures, fte: dict[str, float]) -> OptionCost:
    items = _Items(figures)
    api = s.buy_name
    p_in, p_out = items.v(f"buy.{api}.eur_per_m_input"), items.v(f"buy.{api}.eur_per_m_output")
    m_in, m_out = s.traffic.input_tokens_per_month / 1e6, s.traffic.output_tokens_per_month / 1e6
    items.add(f"token API ({api})", "api", monthly=m_in * p_in + m_out * p_out,
              figures=[f"buy.{api}.eur_per_m_input", f"buy.{api}.eur_per_m_output"],
              formula=f"{m_in:,.3f} M in x {p_in} + {m_out:,.3f} M out x {p_out} EUR")
    _people(items, fte)
    return OptionCost("buy", s.horizon_months, 0, {}, items.items, fte, _tokens(s),
                      [f"Priced on the same volume; the provider carries the reservation. The API must serve "
                       f"the same model class as the other options ({s.model.name})."])


def _tokens(s: Scenario) -> float:
    return float((s.traffic.input_tokens_per_month + s.traffic.output_tokens_per_month) * s.horizon_months)


def scale_hours(option: Option, s: Scenario, figures: Figures) -> dict[str, float]:
    """Yearly hours the artefacts do not show: the served model's lifecycle (every self-run option), and what
    grows with the fleet the scenario needs (GPU servers; edge sites, for support and for the SRE)."""
    model = {"mlops": figures.value("people.mlops_hours_per_model_year")} if option != "buy" else {}
    if option == "onprem":
        try:
            servers = onprem(s, Figures(dict(figures.items)), {}).sizing["servers"]
        except Unserved:
            return model
        return model | {"sre": servers * figures.value("burden.hours_per_gpu_server_year")}
    if option == "edge":
        return model | {"support": s.edge.sites * figures.value("edge.support_hours_per_site_year"),
                        "sre": s.edge.sites * figures.value("edge.sre_hours_per_site_year")}
    return model


def scale_drivers(option: Option, s: Scenario, figures: Figures) -> list[str]:
    """What ``scale_hours`` counted, written out with the figures behind it."""
    hours = scale_hours(option, s, figures)
    out = []
    if "mlops" in hours:
        out.append(f"model lifecycle {hours['mlops']:g} h/year (people.mlops_hours_per_model_year)")
    if option == "onprem" and "sre" in hours:
        out.append(f"GPU servers {hours['sre']:g} h/year (servers x burden.hours_per_gpu_server_year)")
    if option == "edge":
        out.append(f"{s.edge.sites} site(s): support {hours['support']:g} h/year "
                   f"(edge.support_hours_per_site_year), SRE {hours['sre']:g} h/year (edge.sre_hours_per_site_year)")
    if s.people.on_call_24x7 and option != "buy":
        out.append(f"24/7 on-call {figures.value('people.oncall_24x7_fte'):g} FTE (people.oncall_24x7_fte)")
    if option in s.people.fte:
        out.append(f"the scenario's own figure: {s.people.fte[option]:g} FTE (people.fte.{option})")
    return out


def people_fte(s: Scenario, figures: Figures, option: Option, estimate: dict[str, float] | None) -> dict[str, float]:
    """The FTE per role an option is charged: the burden estimate, the scenario's figure, on-call.

    Measured toil (``toil:`` keys) is added to the estimate as its own line; the scenario's own FTE figure
    replaces both (it is the whole team's time).
    """
    base = dict(estimate) if estimate else ({"mlops": figures.value("buy.fte")} if option == "buy" else {})
    toil = {k: v for k, v in base.items() if k.startswith(TOIL)}
    base = {k: v for k, v in base.items() if not k.startswith(TOIL)}
    if option in s.people.fte:
        total = sum(base.values())
        wanted = s.people.fte[option]
        base = {r: v * wanted / total for r, v in base.items()} if total else {"sre": wanted}
        toil = {}
    if s.people.on_call_24x7 and option != "buy":
        base["sre"] = base.get("sre", 0.0) + figures.value("people.oncall_24x7_fte")
    return base | toil


def compute(s: Scenario, figures: Figures, fte: dict[str, dict[str, float]], deployment: CloudDeployment,
            unserved: dict[Option, str] | None = None) -> dict[Option, OptionCost]:
    """Every compared option of the scenario that can serve its model; ``fte`` is the burden estimate per
    option and role. Options that cannot are left out, their reason put in ``unserved``."""
    costs: dict[Option, OptionCost] = {}
    for option in s.compared:
        try:
            costs[option] = price(option, s, figures, people_fte(s, figures, option, fte.get(option)), deployment)
        except Unserved as exc:
            if unserved is not None:
                unserved[option] = exc.reason
    return costs


def price(option: Option, s: Scenario, figures: Figures, people: dict[str, float],
          deployment: CloudDeployment) -> OptionCost:
    """One option with the FTE it is charged; ``Unserved`` when it cannot serve the model."""
    if option == "cloud":
        return cloud(s, figures, people, deployment)
    if option == "onprem":
        return onprem(s, figures, people)
    if option == "edge":
        return edge(s, figures, people)
    return buy(s, figures, people)
