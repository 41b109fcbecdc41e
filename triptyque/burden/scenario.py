"""A TCO scenario: traffic, service hours, sites, GPU type and overrides, in one YAML file.

``load_scenario(path, figures)`` validates the file with pydantic and checks that
every override names a known figure. Every problem is one line naming the file and
the field, all of them at once, so a user fixes the file in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figures, Override
from triptyque.yamlfile import read_yaml

GpuType = Literal["L4", "L40S", "H100-PCIe", "H100-SXM"]
BuyApi = Literal["scaleway-mistral-small-3.2", "scaleway-llama-3.3-70b", "ovh-gpt-oss-20b"]
Option = Literal["edge", "onprem", "cloud", "buy"]
OPTIONS: tuple[Option, ...] = ("edge", "onprem", "cloud", "buy")
Sensitivity = Literal["low", "medium", "high"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Strict):
    input_tokens_per_month: int = Field(ge=0, description="Prompt tokens sent to the service each month.")
    output_tokens_per_month: int = Field(ge=0, description="Tokens the service generates each month.")
    peak_concurrency: int = Field(ge=0, description="Requests in flight at the busiest moment.")


class Service(_Strict):
    hours_per_day: float = Field(gt=0, le=24, description="Hours a day the service must answer.")
    days_per_month: float = Field(gt=0, le=31, description="Days a month the service must answer.")

    @property
    def hours_per_month(self) -> float:
        return self.hours_per_day * self.days_per_month


class Edge(_Strict):
    sites: int = Field(default=0, ge=0, le=100_000, description="Edge sites; 0 leaves the edge option out.")


class Cloud(_Strict):
    always_on: bool = Field(default=True, description="False: GPU nodes exist only during service hours.")
    control_plane: Literal["shared", "dedicated"] = "shared"


class People(_Strict):
    fte_available: float = Field(default=1.0, ge=0, le=1000,
                                 description="FTE the organisation can really dedicate (infra + MLOps + support).")
    on_call_24x7: bool = False
    fte: dict[Option, float] = Field(default_factory=dict,
                                     description="Replace the FTE estimate of an option by your own figure.")

    @field_validator("fte")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [name for name, fte in value.items() if fte < 0]
        if negative:
            raise ValueError(f"must be 0 or more ({', '.join(negative)})")
        return value


class Data(_Strict):
    sensitivity: Sensitivity = "medium"
    model_weights_gb: float = Field(default=16.0, ge=0, description="Size of the served weights (exit cost).")
    logs_gb_per_month: float = Field(default=5.0, ge=0)
    log_retention_months: int = Field(default=12, ge=0, le=120)


class Weights(_Strict):
    """Scorecard weights; any non-negative numbers, normalised to sum to 1."""

    value: float = Field(default=1.0, ge=0)
    risk: float = Field(default=1.0, ge=0)
    dependency: float = Field(default=1.0, ge=0)
    data: float = Field(default=1.0, ge=0)
    run: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> Weights:
        if self.total == 0:
            raise ValueError("at least one weight must be above 0")
        return self

    @property
    def total(self) -> float:
        return self.value + self.risk + self.dependency + self.data + self.run

    def normalised(self) -> dict[str, float]:
        return {name: getattr(self, name) / self.total for name in ("value", "risk", "dependency", "data", "run")}


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    horizon_months: int = Field(default=24, ge=1, le=120)
    options: list[Option] = Field(default_factory=lambda: list(OPTIONS), min_length=1)
    traffic: Traffic
    service: Service
    gpu_type: GpuType
    gpu_utilisation: float | None = Field(
        default=None, gt=0, le=1,
        description="Average busy fraction of the reserved GPUs; left out, the model derives it from traffic.",
    )
    edge: Edge = Edge()
    cloud: Cloud = Cloud()
    buy_api: BuyApi = "scaleway-mistral-small-3.2"
    people: People = People()
    data: Data = Data()
    weights: Weights = Weights()
    overrides: dict[str, Override] = Field(default_factory=dict)

    @field_validator("overrides", mode="before")
    @classmethod
    def _bare_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"value": v} if isinstance(v, int | float) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _edge_needs_sites(self) -> Scenario:
        if "edge" in self.options and self.edge.sites == 0 and "options" in self.model_fields_set:
            raise ValueError("options lists edge but edge.sites is 0")
        return self

    @property
    def compared(self) -> list[Option]:
        """Options actually priced: edge only when there are sites."""
        return [o for o in self.options if o != "edge" or self.edge.sites > 0]


def _line(path: Path, error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {field}: {message}"


def parse_scenario(raw: Any, path: Path, figures: Figures) -> tuple[Scenario, Figures]:
    """Validate an already-parsed document; return the scenario and the figures with its overrides."""
    if not isinstance(raw, dict):
        raise BurdenError([f"{path}: a scenario must be a YAML mapping, got {type(raw).__name__}"])
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = [_line(path, e) for e in exc.errors()]
        unknown = sorted(set(raw.get("overrides") or {}) - set(figures.items)) \
            if isinstance(raw.get("overrides"), dict) else []
        problems += [f"{path}: overrides.{name}: no such figure (see burden/figures.yaml)" for name in unknown]
        raise BurdenError(problems) from None
    return scenario, figures.with_overrides(scenario.overrides, str(path))


def load_scenario(path: Path, figures: Figures) -> tuple[Scenario, Figures]:
    raw = read_yaml(path, BurdenError, "--scenario")
    return parse_scenario(raw, path, figures)
