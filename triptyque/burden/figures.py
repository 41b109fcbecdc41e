"""Default figures: one YAML file, every value with its unit, source, date and confidence.

``load_figures(path)`` validates the file: every value within its unit's range
(``units.py``), no duplicate key, every source a public reference (a publisher, title
or URL and a date), never a path to a file outside the repository.
``Figures.with_overrides(...)`` applies a scenario's overrides: each keeps the
default's unit, must fit its range, and is marked "user override" with its own source;
a bare number is allowed but shown as unsourced (confidence L). The model reads values
with ``figures.value(id)`` and records which ids it used, so a report can name the
source behind every number it prints.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError, field_validator, model_validator

from triptyque.burden import units
from triptyque.burden.errors import BurdenError
from triptyque.burden.inputs import number_hint, read_strict

DEFAULT_FIGURES = Path("burden/figures.yaml")
Confidence = Literal["H", "M", "L"]
UNSOURCED = "unsourced (a bare number in the scenario)"
USER_OVERRIDE = "user override"
# A source names what a reader can look up, not a file on the author's machine.
# (a relative path up, an absolute path of two or more folders, or a Markdown file's name)
_LOCAL_PATH = re.compile(r"(\.\./|(?:^|[\s(])/[\w.-]+/[\w.-]+|\b[\w-]+\.md\b)")


def public_source(source: str) -> str:
    """``source`` itself when it names a public reference; ValueError when it names a local file."""
    if _LOCAL_PATH.search(source):
        raise ValueError("the source names a local file; give the public reference behind it "
                         "(publisher, title or URL, date)")
    return source


class _FigureModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: StrictFloat
    unit: str = Field(min_length=1)
    source: str = Field(min_length=1)
    date: datetime.date
    confidence: Confidence

    @field_validator("source")
    @classmethod
    def _public_source(cls, value: str) -> str:
        return public_source(value)

    @model_validator(mode="after")
    def _in_range(self) -> _FigureModel:
        wrong = units.problem(self.value, self.unit)
        if wrong:
            raise ValueError(wrong)
        return self


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
    default_value: float | None = None

    @property
    def is_estimate(self) -> bool:
        return self.confidence == "L"

    @property
    def unsourced(self) -> bool:
        return self.source == UNSOURCED

    @property
    def origin(self) -> str:
        return USER_OVERRIDE if self.overridden else "default"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "value": self.value, "unit": self.unit, "source": self.source,
                "date": self.date, "confidence": self.confidence, "overridden": self.overridden,
                "origin": self.origin, "unsourced": self.unsourced, "default_value": self.default_value,
                "estimate": self.is_estimate}


class Override(BaseModel):
    """A scenario's replacement for one default figure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: StrictFloat
    source: str | None = Field(default=None, min_length=1)
    date: datetime.date | None = None
    confidence: Confidence | None = None

    @field_validator("source")
    @classmethod
    def _public_source(cls, value: str | None) -> str | None:
        return value if value is None else public_source(value)


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
        problems = [f"{where}: overrides.{name}: no such figure (see the figures file)"
                    for name in sorted(set(overrides) - set(self.items))]
        problems += [f"{where}: overrides.{name}: {wrong}" for name, override in sorted(overrides.items())
                     if name in self.items and (wrong := units.problem(override.value, self.items[name].unit))]
        if problems:
            raise BurdenError(problems)
        items = dict(self.items)
        for figure_id, override in overrides.items():
            default = items[figure_id]
            sourced = override.source is not None
            items[figure_id] = replace(
                default, value=override.value, source=override.source or UNSOURCED,
                confidence=override.confidence or ("M" if sourced else "L"),
                date=override.date.isoformat() if override.date else "", overridden=True,
                default_value=default.value,
            )
        return Figures(items)

    def with_values(self, values: dict[str, float]) -> Figures:
        """A copy with some values replaced (ranges, sensitivity); sources unchanged."""
        items = dict(self.items)
        for figure_id, value in values.items():
            items[figure_id] = replace(items[figure_id], value=value)
        return Figures(items)

    def used_figures(self) -> list[Figure]:
        return [self.items[i] for i in sorted(self.used)]


def load_figures(path: Path = DEFAULT_FIGURES) -> Figures:
    """Read and validate the figures file; one line per problem, naming the file and the field."""
    raw = read_strict(path, "--figures")
    if not isinstance(raw, dict):
        raise BurdenError([f"{path}: a figures file must be a YAML mapping with `figures:`, "
                           f"got {type(raw).__name__}"])
    try:
        parsed = _FileModel.model_validate(raw)
    except ValidationError as exc:
        raise BurdenError([error_line(path, e) for e in exc.errors()]) from None
    return Figures({
        figure_id: Figure(figure_id, f.value, f.unit, f.source, f.date.isoformat(), f.confidence)
        for figure_id, f in parsed.figures.items()
    })


def error_line(path: Path | str, error: Any) -> str:
    """One pydantic error as ``file: field: message``, with the hint for ``4e8``-style numbers."""
    field_name = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    hint = number_hint(given)
    if hint and error.get("type", "").endswith(("_parsing", "_type")):
        message = hint
    elif error.get("type") == "int_type" and isinstance(given, float) and given.is_integer():
        message = f"{message}: write {int(given):_}"
    return f"{path}: {field_name}: {message}"
