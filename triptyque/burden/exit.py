"""Exit cost: what leaving an option costs, in engineering hours, money and machine time.

For each option: porting the resources to the destination (provider-specific ones are
rewritten, portable ones re-applied), building the destination (its static burden: each
component it runs set up once by the team, and its deploy time, measured when a drill of
that target is in the ledger, else modelled), moving the weights and
the retained logs out (egress), commitments still running, and hardware stranded at
the end of the horizon (residual book value not recovered by resale).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from triptyque.burden.evidence import Evidence
from triptyque.burden.figures import Figures
from triptyque.burden.scenario import Option, Scenario
from triptyque.burden.tco import OptionCost

DESTINATION: dict[str, str] = {"cloud": "onprem", "onprem": "cloud", "edge": "cloud", "buy": "cloud"}
BUY_RESOURCES = {"provider_specific_resources": 1, "portable_resources": 1}


@dataclass
class ExitLine:
    name: str
    eur: float
    formula: str
    figures: list[str]


@dataclass
class ExitCost:
    option: Option
    destination: str
    provider_specific: int
    portable: int
    porting_hours: float
    redeploy: Evidence | None
    egress_gb: float
    lines: list[ExitLine]
    notes: list[str] = field(default_factory=list)

    @property
    def total_eur(self) -> float:
        return sum(line.eur for line in self.lines)

    def by_line(self) -> dict[str, float]:
        return {line.name: line.eur for line in self.lines}

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "redeploy"},
                "redeploy": self.redeploy.as_dict() if self.redeploy else None, "total_eur": self.total_eur}


def _egress_price(option: Option, figures: Figures, gigabytes: float) -> tuple[float, str, list[str]]:
    if option == "cloud":
        free = figures.value("cloud.object_storage_free_gb_month")
        price = figures.value("cloud.object_storage_egress_eur_per_gb")
        billable = max(0.0, gigabytes - free)
        return billable * price, f"max(0, {gigabytes:,.1f} GB - {free:g} GB free) x {price} EUR/GB", [
            "cloud.object_storage_free_gb_month", "cloud.object_storage_egress_eur_per_gb"]
    if option == "buy":
        return 0.0, "prompts and logs held by the provider: their export depends on the contract", []
    price = figures.value("onprem.egress_eur_per_gb")
    return gigabytes * price, f"{gigabytes:,.1f} GB x {price} EUR/GB", ["onprem.egress_eur_per_gb"]


def exit_cost(option: Option, s: Scenario, figures: Figures, *, tco: OptionCost, counts: dict[str, int] | None,
              redeploy: Evidence | None, partial: bool = False,
              destination_counts: dict[str, int] | None = None) -> ExitCost:
    counts = BUY_RESOURCES if option == "buy" else (counts or {})
    specific = counts.get("provider_specific_resources", 0)
    portable = counts.get("portable_resources", 0)
    h_specific = figures.value("exit.hours_per_provider_specific_resource")
    h_portable = figures.value("exit.hours_per_portable_resource")
    hours = specific * h_specific + portable * h_portable
    rate = figures.value("people.sre.loaded_eur_year") / figures.value("people.hours_per_fte_year")
    lines = [ExitLine("porting", hours * rate,
                      f"({specific} provider-specific x {h_specific:g} h + {portable} portable x {h_portable:g} h) "
                      f"x {rate:,.2f} EUR/h",
                      ["exit.hours_per_provider_specific_resource", "exit.hours_per_portable_resource",
                       "people.sre.loaded_eur_year", "people.hours_per_fte_year"])]
    if destination_counts is not None:
        components = destination_counts.get("components", 0)
        per_component = figures.value("exit.hours_per_destination_component")
        deploy_h = redeploy.value / 3600 if redeploy is not None else 0.0
        build_h = components * per_component + deploy_h
        lines.append(ExitLine(
            "building the destination", build_h * rate,
            f"({components} components of {DESTINATION[option]} x {per_component:g} h + deploy "
            f"{deploy_h:,.2f} h) x {rate:,.2f} EUR/h",
            ["exit.hours_per_destination_component", "people.sre.loaded_eur_year", "people.hours_per_fte_year"]))
    gigabytes = s.exit_weights_gb + s.data.logs_gb_per_month * s.data.log_retention_months
    egress, formula, ids = _egress_price(option, figures, gigabytes)
    lines.append(ExitLine("egress (weights and logs)", egress, formula, ids))
    if option == "cloud" and s.cloud.control_plane == "dedicated":
        days = figures.value("cloud.control_plane.dedicated_commitment_days")
        price = figures.value("cloud.control_plane.dedicated_eur_per_hour")
        lines.append(ExitLine("commitments", days * 24 * price, f"{days:g} days x 24 h x {price} EUR/h",
                              ["cloud.control_plane.dedicated_commitment_days",
                               "cloud.control_plane.dedicated_eur_per_hour"]))
    else:
        lines.append(ExitLine("commitments", 0.0, "no commitment in this scenario", []))
    resale = figures.value("exit.hardware_resale_fraction")
    residual = tco.residual_book_value
    lines.append(ExitLine("stranded hardware", residual * (1 - resale),
                          f"residual book value {residual:,.0f} EUR x (1 - {resale} resale)",
                          ["exit.hardware_resale_fraction"]))
    notes = []
    if partial:
        notes.append("Lower bound: some artefacts were not rendered, so not every resource was counted.")
    if option == "buy":
        notes.append("Leaving the API means building the destination's deployment; that is its own TCO.")
    return ExitCost(option, DESTINATION[option], specific, portable, hours, redeploy, gigabytes, lines, notes)
