"""A TCO scenario: the model served, traffic, service hours, sites, GPU type, overrides.

``load_scenario(path, figures)`` validates the file with pydantic: every numeric field
has a unit and a valid range (``unit`` in its JSON schema, bounds on the field), a key
written twice or unknown is refused, every override names a known figure and fits its
unit's range. Every problem is one line naming the file and the field, all of them at
once, so a user fixes the file in one pass; ``4e8`` (text to YAML) gets the hint
"write 400_000_000".
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figure, Figures, Override, error_line
from triptyque.burden.inputs import read_strict

GpuType = Literal["L4", "L40S", "H100-PCIe", "H100-SXM"]
Quantisation = Literal["bf16", "fp16", "fp8", "int8", "int4"]
BYTES_PER_PARAMETER: dict[str, float] = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
Option = Literal["edge", "onprem", "cloud", "buy"]
OPTIONS: tuple[Option, ...] = ("edge", "onprem", "cloud", "buy")
Sensitivity = Literal["low", "medium", "high"]


def _unit(unit: str) -> dict[str, Any]:
    return {"unit": unit}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Model(_Strict):
    """The model every option serves; its size drives memory, GPU count and throughput."""

    name: str = Field(min_length=1, description="What is served, e.g. mistral-small-3.2-24b.")
    parameters_billion: StrictFloat = Field(gt=0, le=2000, json_schema_extra=_unit("billion parameters"))
    quantisation: Quantisation = Field(description="Weights precision: bf16, fp16, fp8, int8 or int4 (AWQ/GPTQ).")
    context_tokens: StrictInt = Field(ge=256, le=1_048_576, json_schema_extra=_unit("tokens"),
                                description="The engine's max_model_len.")
    kv_cache_bytes_per_token: StrictInt = Field(
        ge=1_000, le=10_000_000, json_schema_extra=_unit("bytes/token"),
        description="2 (K and V) x layers x KV heads x head dim x 2 bytes, from the model's config.json.")
    publisher: str | None = Field(default=None, min_length=1, description="Who publishes the weights.")
    publisher_jurisdiction: str | None = Field(default=None, min_length=1)
    licence: str | None = Field(default=None, min_length=1, description="The weights' licence.")
    average_sequence_tokens: StrictInt = Field(default=2048, ge=1, le=1_048_576, json_schema_extra=_unit("tokens"),
                                         description="Prompt + answer of a typical request (KV cache per request).")

    @model_validator(mode="after")
    def _fits_context(self) -> Model:
        if self.average_sequence_tokens > self.context_tokens:
            raise ValueError("average_sequence_tokens is above context_tokens")
        return self

    @property
    def weights_gb(self) -> float:
        return self.parameters_billion * BYTES_PER_PARAMETER[self.quantisation]


class Traffic(_Strict):
    input_tokens_per_month: StrictInt = Field(ge=0, le=10**15, json_schema_extra=_unit("tokens/month"),
                                        description="Prompt tokens sent to the service each month.")
    output_tokens_per_month: StrictInt = Field(ge=0, le=10**15, json_schema_extra=_unit("tokens/month"),
                                         description="Tokens the service generates each month.")
    peak_concurrency: StrictInt = Field(ge=0, le=1_000_000, json_schema_extra=_unit("requests"),
                                  description="Requests in flight at the busiest moment.")


class Service(_Strict):
    hours_per_day: StrictFloat = Field(gt=0, le=24, json_schema_extra=_unit("h/day"),
                                 description="Hours a day the service must answer.")
    days_per_month: StrictFloat = Field(gt=0, le=31, json_schema_extra=_unit("days/month"),
                                  description="Days a month the service must answer.")

    @property
    def hours_per_month(self) -> float:
        return self.hours_per_day * self.days_per_month


class Edge(_Strict):
    sites: StrictInt = Field(default=0, ge=0, le=100_000, json_schema_extra=_unit("sites"),
                       description="Edge sites; 0 leaves the edge option out.")


class Cloud(_Strict):
    always_on: bool = Field(default=True, description="False: wish for GPU nodes only during service hours; "
                                                      "granted only when the stack's GPU pool can scale to 0.")
    control_plane: Literal["shared", "dedicated"] = "shared"


class Onprem(_Strict):
    facility: Literal["colocation", "server_room"] = Field(
        default="colocation",
        description="colocation: a share of a rack, power included; server_room: your room, power x PUE.")


class BuyPrice(_Strict):
    """A managed API's price, given in the scenario (any provider)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    eur_per_m_input: StrictFloat = Field(ge=0, le=1000, json_schema_extra=_unit("EUR per million input tokens"))
    eur_per_m_output: StrictFloat = Field(ge=0, le=1000, json_schema_extra=_unit("EUR per million output tokens"))
    parameters_billion: StrictFloat | None = Field(
        default=None, gt=0, le=2000, json_schema_extra=_unit("billion parameters"),
        description="The size of the model the API serves: it must be of the scenario's model class.")
    source: str | None = Field(default=None, min_length=1)
    date: datetime.date | None = None


class People(_Strict):
    fte_available: StrictFloat = Field(default=1.0, ge=0, le=1000, json_schema_extra=_unit("FTE"),
                                 description="FTE the organisation can really dedicate (infra + MLOps + support).")
    on_call_24x7: bool = False
    skills: list[str] | None = Field(
        default=None, description="Skill ids of burden/skills.yaml the team has (e.g. infra.linux, ai.gpu); "
                                  "left out, run feasibility counts FTE only.")
    fte: dict[Option, StrictFloat] = Field(default_factory=dict, json_schema_extra=_unit("FTE"),
                                     description="Replace the FTE estimate of an option by your own figure.")

    @field_validator("fte")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        wrong = [name for name, fte in value.items() if not 0 < fte <= 1000]
        if wrong:
            raise ValueError(f"must be above 0 and at most 1000 ({', '.join(wrong)})")
        return value


class Data(_Strict):
    sensitivity: Sensitivity = "medium"
    model_weights_gb: StrictFloat | None = Field(default=None, gt=0, le=100_000, json_schema_extra=_unit("GB"),
                                           description="Weights to move on exit; default: the model's size.")
    logs_gb_per_month: StrictFloat = Field(default=5.0, ge=0, le=1_000_000, json_schema_extra=_unit("GB/month"))
    log_retention_months: StrictInt = Field(default=12, ge=0, le=120, json_schema_extra=_unit("months"))


class Weights(_Strict):
    """Scorecard weights; any non-negative numbers, normalised to sum to 1."""

    value: StrictFloat = Field(default=1.0, ge=0, le=100, json_schema_extra=_unit("weight"))
    risk: StrictFloat = Field(default=1.0, ge=0, le=100, json_schema_extra=_unit("weight"))
    dependency: StrictFloat = Field(default=1.0, ge=0, le=100, json_schema_extra=_unit("weight"))
    data: StrictFloat = Field(default=1.0, ge=0, le=100, json_schema_extra=_unit("weight"))
    run: StrictFloat = Field(default=1.0, ge=0, le=100, json_schema_extra=_unit("weight"))

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
    horizon_months: StrictInt = Field(default=24, ge=1, le=120, json_schema_extra=_unit("months"))
    options: list[Option] = Field(default_factory=lambda: list(OPTIONS), min_length=1)
    model: Model
    traffic: Traffic
    service: Service
    gpu_type: GpuType = Field(description="The GPU bought on-prem (the cloud's comes from its stack).")
    gpu_utilisation: StrictFloat | None = Field(
        default=None, gt=0, le=1, json_schema_extra=_unit("ratio"),
        description="Average busy fraction of the reserved GPUs; left out, the model derives it from traffic.",
    )
    edge: Edge = Edge()
    cloud: Cloud = Cloud()
    onprem: Onprem = Onprem()
    buy_api: str | BuyPrice = Field(
        default="scaleway-mistral-small-3.2",
        description="A provider in the figures (buy.<name>.*) or {name, eur_per_m_input, eur_per_m_output, "
                    "source, date}: any provider's price for the same model class.")
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

    @property
    def buy_name(self) -> str:
        return self.buy_api if isinstance(self.buy_api, str) else self.buy_api.name

    @property
    def exit_weights_gb(self) -> float:
        return self.data.model_weights_gb if self.data.model_weights_gb is not None else self.model.weights_gb

    @model_validator(mode="after")
    def _edge_needs_sites(self) -> Scenario:
        if "edge" in self.options and self.edge.sites == 0 and "options" in self.model_fields_set:
            raise ValueError("options lists edge but edge.sites is 0")
        return self

    @property
    def compared(self) -> list[Option]:
        """Options actually priced: edge only when there are sites."""
        return [o for o in self.options if o != "edge" or self.edge.sites > 0]


# Two models are of one class when their sizes are within this factor of each other: a
# managed API serving a much larger (or smaller) model is not the same service.
MODEL_CLASS_FACTOR = 1.5


def model_class_mismatch(s: Scenario, figures: Figures) -> str | None:
    """Why the managed API is not the same service as the model every option serves, if it is not.

    Known only when the API's model size is (``buy.<name>.parameters_billion`` in the figures,
    or ``parameters_billion`` beside a price given in the scenario)."""
    api = s.buy_api if isinstance(s.buy_api, str) else s.buy_api.name
    size = figures.items.get(f"buy.{api}.parameters_billion")
    api_billion = size.value if size is not None else (
        None if isinstance(s.buy_api, str) else s.buy_api.parameters_billion)
    if api_billion is None:
        return None
    ours = s.model.parameters_billion
    if max(ours, api_billion) / min(ours, api_billion) <= MODEL_CLASS_FACTOR:
        return None
    return (f"buy_api: {api} serves a {api_billion:g}B model, not the class of the model every option serves "
            f"(model.parameters_billion: {ours:g}B): the managed-API baseline is not the same service; name an "
            "API of that class, or give its price with parameters_billion")


def _buy_figures(s: Scenario, figures: Figures, path: Path) -> Figures:
    """The managed API's two prices as figures: from the figures file, or given in the scenario."""
    if isinstance(s.buy_api, str):
        missing = [f"buy.{s.buy_api}.{p}" for p in ("eur_per_m_input", "eur_per_m_output")
                   if f"buy.{s.buy_api}.{p}" not in figures.items]
        if missing:
            known = sorted({i.split(".")[1] for i in figures.items if i.startswith("buy.") and i.count(".") == 2})
            raise BurdenError([f"{path}: buy_api: no prices for {s.buy_api!r} in the figures file; use one of "
                               f"{', '.join(known)} or give {{name, eur_per_m_input, eur_per_m_output, source}}"])
        return figures
    price = s.buy_api
    items = dict(figures.items)
    for part, value, unit in (("eur_per_m_input", price.eur_per_m_input, "EUR per million input tokens"),
                              ("eur_per_m_output", price.eur_per_m_output, "EUR per million output tokens")):
        figure_id = f"buy.{price.name}.{part}"
        items[figure_id] = Figure(figure_id, value, unit, price.source or "unsourced (a bare number in the scenario)",
                                  price.date.isoformat() if price.date else "", "M" if price.source else "L",
                                  overridden=True)
    return Figures(items)


def parse_scenario(raw: Any, path: Path, figures: Figures) -> tuple[Scenario, Figures]:
    """Validate an already-parsed document; return the scenario and the figures with its overrides."""
    if not isinstance(raw, dict):
        raise BurdenError([f"{path}: a scenario must be a YAML mapping, got {type(raw).__name__}"])
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = [error_line(path, e) for e in exc.errors()]
        unknown = sorted(set(raw.get("overrides") or {}) - set(figures.items)) \
            if isinstance(raw.get("overrides"), dict) else []
        problems += [f"{path}: overrides.{name}: no such figure (see the figures file)" for name in unknown]
        raise BurdenError(problems) from None
    return scenario, _buy_figures(scenario, figures.with_overrides(scenario.overrides, str(path)), path)


def load_scenario(path: Path, figures: Figures) -> tuple[Scenario, Figures]:
    raw = read_strict(path, "--scenario")
    return parse_scenario(raw, path, figures)
