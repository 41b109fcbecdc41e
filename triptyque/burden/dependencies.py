"""Whom each option depends on: vendor, jurisdiction, licence and how to replace each dependency.

``load_dependencies(path)`` reads ``burden/dependencies.yaml`` (validated, duplicate keys
refused). ``dependency_map(...)`` (pure) lists, per option, the entries that apply,
each with the artefact that shows it is deployed (from the static burden) or marked as
sourced data when none does; the model's publisher and the managed API's provider come
from the scenario.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import error_line
from triptyque.burden.inputs import read_strict
from triptyque.burden.scenario import Option, Scenario
from triptyque.burden.static import TargetBurden

# The managed APIs of the figures file: who runs them.
API_PROVIDERS: dict[str, tuple[str, str]] = {"scaleway": ("Scaleway SAS (Iliad group)", "FR (EU)"),
                                             "ovh": ("OVH SAS (OVHcloud)", "FR (EU)")}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    what: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    jurisdiction: str = Field(min_length=1)
    licence: str = Field(min_length=1)
    replaceable: str = Field(min_length=1)
    source: str = Field(min_length=1)
    options: list[Option] = Field(min_length=1)
    match: list[str] = Field(default_factory=list)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dependencies: dict[str, _Entry]


@dataclass(frozen=True)
class Dependency:
    name: str
    what: str
    vendor: str
    jurisdiction: str
    licence: str
    replaceable: str
    evidence: str  # the artefact that shows it, or where the data comes from

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_dependencies(path: Path) -> dict[str, _Entry]:
    raw = read_strict(path, "--dependencies")
    try:
        return _File.model_validate(raw).dependencies
    except ValidationError as exc:
        raise BurdenError([error_line(path, e) for e in exc.errors()]) from None


def dependency_map(entries: dict[str, _Entry], s: Scenario, options: list[Option],
                   burdens: dict[str, TargetBurden]) -> dict[Option, list[Dependency]]:
    out: dict[Option, list[Dependency]] = {}
    for option in options:
        found: list[Dependency] = []
        burden = burdens.get(option)
        items = [i for i in burden.items if i.kind in ("component", "dependency")] if burden else []
        for name, e in entries.items():
            if option not in e.options:
                continue
            seen = next((i for i in items if any(m in i.name for m in e.match)), None)
            evidence = f"artefact: {seen.name} ({seen.where})" if seen else f"sourced: {e.source}"
            found.append(Dependency(name, e.what, e.vendor, e.jurisdiction, e.licence, e.replaceable, evidence))
        found.append(Dependency(
            "model", f"model weights: {s.model.name}", s.model.publisher or "not given in the scenario",
            s.model.publisher_jurisdiction or "not given", s.model.licence or "not given in the scenario",
            "easy if another model of the class is good enough (re-evaluate quality)", "scenario: model"))
        if option == "buy":
            vendor, where = API_PROVIDERS.get(s.buy_name.split("-")[0], ("as named in the scenario", "not given"))
            found.append(Dependency(
                "api provider", f"managed token API: {s.buy_name} (the stack behind it is the provider's, not "
                                f"visible here)", vendor, where, "proprietary service",
                "medium - another OpenAI-compatible API; prompts and logs held by the provider", "scenario: buy_api"))
        out[option] = found
    return out
