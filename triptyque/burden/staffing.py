"""The source documents' qualitative staffing levels, turned into FTE ranges the FTE model uses. Pure but the loader.

``burden/staffing.yaml`` says, per option and skill domain, the level the source note gives
("Moyen", "Élevé", "Élevée en volume"...) with the exact passage (section, quote) and the
public references the note cites there. Each level's FTE band is a figure
(``staffing.<level>.fte_low`` / ``fte_high``; ``high_in_volume`` is per site:
``staffing.high_in_volume.hours_per_site_year_low`` / ``_high`` x sites / the hours of an
FTE year, never below the ``low`` band), so it is sourced, range-checked and overridable.

How the FTE model uses it (``bound``): for each domain, the bottom-up estimate ``e``
(artefacts, servers, sites, upgrades) becomes ``max(e, band low)``: a level the documents
give is a floor the artefacts alone cannot see. The domain's range is
``[max(band low, 0.65 e) capped at the point, max(band high, 1.35 e)]``: the documents'
band, widened where the drivers go past it (500 sites), the estimate's own spread being
+-35 % (confidence L). Measured toil is held; the 24/7 on-call and a scenario's own FTE
figure are applied after (``tco.people_fte``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from triptyque.burden.errors import BurdenError
from triptyque.burden.figures import Figures, error_line, public_source
from triptyque.burden.inputs import read_strict
from triptyque.burden.scenario import Option

STAFFING_FILE = Path("burden/staffing.yaml")
Level = Literal["low", "low_to_medium", "medium", "high", "high_in_volume"]
Domain = Literal["infra", "ai", "support"]
ROLE_OF: dict[str, str] = {"infra": "sre", "ai": "mlops", "support": "support"}
DOMAIN_OF: dict[str, str] = {role: domain for domain, role in ROLE_OF.items()}
SPREAD = 0.35  # the bottom-up estimate's own spread (hours figures of confidence L)
TOIL = "toil:"


class Passage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Level
    section: str = Field(min_length=1)
    quote: str = Field(min_length=1)
    references: list[str] = Field(min_length=1)
    reading: str | None = Field(default=None, min_length=1)

    @field_validator("references")
    @classmethod
    def _public(cls, value: list[str]) -> list[str]:
        return [public_source(v) for v in value]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    document: str = Field(min_length=1)
    options: dict[Option, dict[Domain, Passage]]


@dataclass(frozen=True)
class Staffing:
    document: str
    options: dict[str, dict[str, Passage]]

    def passage(self, option: str, role: str) -> Passage | None:
        return self.options.get(option, {}).get(DOMAIN_OF.get(role, role))


def load_staffing(path: Path = STAFFING_FILE) -> Staffing:
    """Read and validate the mapping; one line per problem, naming the file and the field."""
    if not path.is_file():
        raise BurdenError([f"{path}: file not found (the source documents' staffing levels; it ships in burden/)"])
    raw = read_strict(path, "--staffing")
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise BurdenError([error_line(path, e) for e in exc.errors()]) from None
    return Staffing(parsed.document, {o: {str(k): v for k, v in d.items()} for o, d in parsed.options.items()})


@dataclass(frozen=True)
class Band:
    """One option's level in one domain, as FTE."""

    option: str
    domain: str
    level: str
    low: float
    high: float
    formula: str
    figures: list[str]
    section: str
    quote: str
    references: list[str]
    reading: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def band(option: str, role: str, passage: Passage, figures: Figures, sites: int) -> Band:
    level = passage.level
    low_ids = ["staffing.low.fte_low", "staffing.low.fte_high"]
    if level == "high_in_volume":
        ids = ["staffing.high_in_volume.hours_per_site_year_low", "staffing.high_in_volume.hours_per_site_year_high",
               "people.hours_per_fte_year", *low_ids]
        per_fte = figures.value("people.hours_per_fte_year")
        h_low, h_high = (figures.value(i) for i in ids[:2])
        floor_low, floor_high = (figures.value(i) for i in low_ids)
        low, high = max(floor_low, sites * h_low / per_fte), max(floor_high, sites * h_high / per_fte)
        formula = (f"{sites} site(s) x {h_low:g}-{h_high:g} h/site/year / {per_fte:,.0f} h, "
                   f"never below low ({floor_low:g}-{floor_high:g}) = {low:.3f}-{high:.3f} FTE")
    else:
        ids = [f"staffing.{level}.fte_low", f"staffing.{level}.fte_high"]
        low, high = (figures.value(i) for i in ids)
        formula = f"{level}: {low:g}-{high:g} FTE"
    if figures.value(ids[0]) > figures.value(ids[1]):
        raise BurdenError([f"figures: {ids[0]} ({figures.value(ids[0]):g}) is above {ids[1]} "
                           f"({figures.value(ids[1]):g}): a band's low end cannot pass its high end"])
    return Band(option, DOMAIN_OF.get(role, role), level, low, high, formula, ids, passage.section, passage.quote,
                list(passage.references), passage.reading)


@dataclass
class Bounded:
    """An option's FTE per role after the documents' levels: the point, its low and high, and why."""

    point: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    bands: dict[str, Band] = field(default_factory=dict)
    raised: dict[str, float] = field(default_factory=dict)  # role -> the estimate that was below the band

    def as_dict(self) -> dict[str, Any]:
        return {"point": self.point, "low": self.low, "high": self.high,
                "bands": {r: b.as_dict() for r, b in self.bands.items()}, "raised_from": self.raised}


def bound(option: str, estimate: dict[str, float], staffing: Staffing, figures: Figures, sites: int) -> Bounded:
    """The FTE per role of ``option``: the bottom-up ``estimate`` held to the documents' level in each domain."""
    out = Bounded({}, {}, {})
    for key, value in estimate.items():
        if key.startswith(TOIL):
            out.point[key] = out.low[key] = out.high[key] = value
    for role in ("sre", "mlops", "support"):
        e = estimate.get(role, 0.0)
        passage = staffing.passage(option, role)
        if passage is None:
            if e:
                out.point[role], out.low[role], out.high[role] = e, e * (1 - SPREAD), e * (1 + SPREAD)
            continue
        b = band(option, role, passage, figures, sites)
        out.bands[role] = b
        point = max(e, b.low)
        if e < b.low:
            out.raised[role] = e
        out.point[role] = point
        out.low[role] = min(point, max(b.low, e * (1 - SPREAD)))
        out.high[role] = max(b.high, e * (1 + SPREAD))
    return out


def describe(option: str, bounded: Bounded) -> list[str]:
    """One plain line per domain: the level, its band and what it did to the estimate."""
    lines = []
    for role, b in bounded.bands.items():
        what = (f"raised from the estimate {bounded.raised[role]:.2f} to the level's low end {b.low:.2f} FTE"
                if role in bounded.raised else f"estimate {bounded.point[role]:.2f} FTE kept (at or above the level)")
        lines.append(f"{b.domain}: source note says \"{b.quote}\" ({b.section}) = {b.formula}; {what}")
    return lines


def level_bands(figures: Figures, sites: int) -> dict[str, dict[str, Any]]:
    """Every level of the mapping as its FTE band (the report's assumptions), ``high_in_volume`` at ``sites``."""
    out: dict[str, dict[str, Any]] = {}
    for level in ("low", "low_to_medium", "medium", "high"):
        ids = [f"staffing.{level}.fte_low", f"staffing.{level}.fte_high"]
        low, high = (figures.value(i) for i in ids)
        out[level] = {"low": low, "high": high, "unit": "FTE", "figures": ids, "formula": f"{low:g}-{high:g} FTE"}
    passage = Passage(level="high_in_volume", section="-", quote="-", references=["-"])
    b = band("edge", "support", passage, figures, sites)
    out["high_in_volume"] = {"low": b.low, "high": b.high, "unit": f"FTE at {sites} site(s)", "figures": b.figures,
                             "formula": b.formula}
    return out
