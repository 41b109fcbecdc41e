"""Default figures: one YAML file, every value with its unit, source, date and confidence.

``load_figures(path)`` validates the file; ``Figures.with_overrides(...)`` applies a
scenario's overrides, each of which keeps the default's unit and is marked as the
user's. The model reads values with ``figures.value(id)`` and records which ids it
used, so a report can name the source behind every number it prints.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triptyque.burden.errors import BurdenError

DEFAULT_FIGURES = Path("burden/figures.yaml")
Confidence = Literal["H", "M", "L"]


class _FigureModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    unit: str = Field(min_length=1)
    source: str = Field(min_length=1)
    date: datetime.date
    confidence: Confidence


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    figures: dict[str, _FigureModel]


@dataclass(frozen=True)
class Figure:
    id: str
    value: float
    unit: str
    source: str
    date: str
    confidence: Confidence
    overridden: bool = False

    @property
    def is_estimate(self) -> bool:
        return self.confidence == "L"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "value": self.value, "unit": self.unit, "source": self.source,
                "date": self.date, "confidence": self.confidence, "overridden": self.overridden,
                "estimate": self.is_estimate}


class Override(BaseModel):
    """A scenario's replacement for one default figure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    source: str = "user override"
    date: datetime.date | None = None
    confidence: Confidence = "M"


@dataclass
class Figures:
    items: dict[str, Figure]
    used: set[str] = field(default_factory=set)

    def figure(self, figure_id: str) -> Figure:
        try:
            found = self.items[figure_id]
        except KeyError:
            raise BurdenError([f"figure {figure_id!r} is not in the figures file"]) from None
        self.used.add(figure_id)
        return found

    def value(self, figure_id: str) -> float:
        return self.figure(figure_id).value

    def with_overrides(self, overrides: dict[str, Override], where: str) -> Figures:
        unknown = sorted(set(overrides) - set(self.items))
        if unknown:
            raise BurdenError([f"{where}: overrides.{name}: no such figure (see burden/figures.yaml)"
                               for name in unknown])
        items = dict(self.items)
        for figure_id, override in overrides.items():
            default = items[figure_id]
            items[figure_id] = replace(
                default, value=override.value, source=override.source, confidence=override.confidence,
                date=override.date.isoformat() if override.date else default.date, overridden=True,
            )
        return Figures(items)

    def used_figures(self) -> list[Figure]:
        return [self.items[i] for i in sorted(self.used)]


def load_figures(path: Path = DEFAULT_FIGURES) -> Figures:
    """Read and validate the figures file; one line per problem, naming the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BurdenError([f"{path}: file not found (pass --figures PATH)"]) from None
    except yaml.YAMLError as exc:
        raise BurdenError([f"{path}: invalid YAML: {exc}"]) from None
    try:
        parsed = _FileModel.model_validate(raw)
    except ValidationError as exc:
        raise BurdenError([
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]) from None
    return Figures({
        figure_id: Figure(figure_id, f.value, f.unit, f.source, f.date.isoformat(), f.confidence)
        for figure_id, f in parsed.figures.items()
    })
