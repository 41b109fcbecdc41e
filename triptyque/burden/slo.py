"""Whether each option, as deployed and sized, meets the spec's availability SLO, and what N+1 costs. Pure.

Each priced option runs on machines sized to the load, none spare (N+0): losing any
accelerator loses capacity until it is repaired. Unavailability is counted as
accelerators x interruptions per accelerator-year (``gpu.interruptions_per_gpu_year``,
Meta's Llama 3 training fleet) x hours to repair / 8,760 h, a pessimistic reading in
which every interruption makes the service unavailable until repaired. Repair: cloud,
the modelled time for the GPU pool to replace a node and serve again (the ``scale-out``
drill: autohealing); on-prem, the hardware repair time of a support contract (no spare);
edge, a device swap, per site (one site's outage leaves the others serving). With one
spare (N+1), the service is down only when two fail together: unavailability squared.
The managed API's availability is the provider's contract, not modelled here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from triptyque.burden.figures import Figures
from triptyque.burden.scenario import Option, Scenario
from triptyque.burden.tco import OptionCost

HOURS_A_YEAR = 8760


@dataclass
class Continuity:
    option: Option
    slo: float
    accelerators: int
    repair_hours: float
    availability: float | None
    meets: bool | None
    with_spare: float | None
    spare_eur: float | None
    single_points: list[str]
    formula: str
    figures: list[str] = field(default_factory=list)
    kill_reach_seconds: float | None = None  # how long the kill switch takes to reach every site (edge)
    kill_reach: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _availability(accelerators: int, rate: float, repair_hours: float) -> tuple[float, float]:
    down = accelerators * rate * repair_hours / HOURS_A_YEAR
    return 1 - down, 1 - down * down


def continuity(option: Option, s: Scenario, figures: Figures, cost: OptionCost, *, slo: float,
               cloud_repair_seconds: float | None, cloud_control_plane_sla: str,
               fleet_kill: tuple[float, str] | None = None) -> Continuity:
    """``fleet_kill``: (seconds, how it is known) for the kill switch to reach every edge site."""
    rate = figures.value("gpu.interruptions_per_gpu_year")
    sizing, months = cost.sizing, s.horizon_months
    if option == "buy":
        return Continuity(option, slo, 0, 0.0, None, None, None, None,
                          [f"the API provider ({s.buy_name}): its contract's SLA applies"],
                          "not modelled: the provider's availability")
    if option == "cloud":
        accelerators = int(sizing["nodes"] * sizing["devices_per_replica"])
        repair = (cloud_repair_seconds or 0.0) / 3600
        node_line = next(i for i in cost.items if i.name.startswith("GPU nodes"))
        spare = node_line.monthly / sizing["nodes"] * months
        points = [f"{int(sizing['nodes'])} GPU node(s), none spare: autohealing replaces a lost one in "
                  f"{repair * 60:,.1f} min (modelled scale-out drill)",
                  f"Kapsule control plane: {cloud_control_plane_sla} (running pods keep serving while it is down)"]
        ids = ["gpu.interruptions_per_gpu_year"]
        how = f"{repair:,.3f} h (scale-out drill, modelled)"
    elif option == "onprem":
        accelerators = int(sizing["gpus"])
        repair = figures.value("onprem.hardware_repair_hours")
        servers = int(sizing["servers"])
        capex = sum(i.upfront for i in cost.items if i.name.startswith("servers"))  # not the room's UPS
        per_server = capex / servers if servers else 0.0
        share = per_server * min(months, cost.depreciation_months) / cost.depreciation_months \
            if cost.depreciation_months else per_server
        monthly = sum(i.monthly for i in cost.items if i.category in ("maintenance", "hosting", "power"))
        spare = share + monthly / servers * months if servers else 0.0
        points = [f"{servers} server(s), none spare: a hardware fault waits for the repair ({repair:g} h)"]
        ids = ["gpu.interruptions_per_gpu_year", "onprem.hardware_repair_hours"]
        how = f"{repair:g} h (onprem.hardware_repair_hours)"
    else:
        accelerators = int(sizing["devices_per_site"])
        repair = figures.value("edge.device_replace_hours")
        device = next(i for i in cost.items if i.name == "edge devices")
        per_device = device.upfront / sizing["devices"] if sizing["devices"] else 0.0
        spare = per_device * sizing["sites"]
        points = [f"{accelerators} device(s) per site, none spare: a site waits {repair:g} h for a swap; "
                  "the other sites keep serving"]
        ids = ["gpu.interruptions_per_gpu_year", "edge.device_replace_hours"]
        how = f"{repair:g} h (edge.device_replace_hours), per site"
    availability, with_spare = _availability(accelerators, rate, repair)
    formula = (f"1 - {accelerators} accelerator(s) x {rate:g} interruptions/year x {how} / {HOURS_A_YEAR} h "
               f"= {availability:.5f}; with one spare: {with_spare:.7f}")
    found = Continuity(option, slo, accelerators, repair, availability, availability >= slo, with_spare, spare,
                       points, formula, ids)
    if option == "edge" and fleet_kill is not None:
        found.kill_reach_seconds, found.kill_reach = fleet_kill
        found.single_points.append(f"kill switch reaches every site in {fleet_kill[1]}")
    return found
