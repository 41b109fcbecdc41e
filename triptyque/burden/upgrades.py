"""Engine upgrades as a driver of the SRE's time: upgrades a year x (review + rollout), per option. Pure.

Frequency: ``ops.upgrades_per_year`` (vLLM publishes about one release a month). Each
upgrade costs ``ops.upgrade_review_hours`` of human work whatever the option (release
notes, the pinned version, a first node, the metrics after), plus the rollout, which the
SRE starts and watches to the end:

- edge: the edge scale model's ``upgrade`` time for the fleet the scenario needs (one node
  per device): *measured* when the bench measured that many nodes, *modelled* otherwise,
  with the fit's relative error; without a scale model, a measured ``upgrade`` drill from
  the ledger (on the fleet it ran on, said so); without either, no rollout time, and the
  report says that today's per-site figure (``edge.sre_hours_per_site_year``) carries it.
- onprem, cloud: modelled; a rolling update replaces the engine replicas one at a time,
  each pulling the image, loading the weights and starting the engine (the figures of the
  modelled Kubernetes drills).
- buy: none; the provider upgrades its own service.

A measured rollout becomes its own TCO line (``tco.TOIL``: marked measured, naming its
ledger row or scale file); the review hours and a modelled rollout go into the SRE's
estimate, listed among what drives it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from triptyque.burden.edge_scale import EdgeScale
from triptyque.burden.figures import Figures
from triptyque.burden.tco import TOIL

ROLLOUT_IDS = ["k8s.image_pull_s", "k8s.weights_loaded_s", "k8s.engine_ready_s"]


@dataclass
class Upgrades:
    option: str
    per_year: float
    review_hours: float
    rollout_seconds: float | None
    kind: Literal["measured", "modelled", "none"]
    rollout: str  # how the rollout time is known, in words
    figures: list[str] = field(default_factory=list)
    measured_ref: str | None = None
    relative_error: float = 0.0

    @property
    def estimate_hours(self) -> float:
        """Hours a year that go into the SRE's estimate: the review, and a modelled rollout."""
        rollout = (self.rollout_seconds or 0.0) / 3600 if self.kind == "modelled" else 0.0
        return self.per_year * (self.review_hours + rollout)

    @property
    def measured_hours(self) -> float:
        return self.per_year * (self.rollout_seconds or 0.0) / 3600 if self.kind == "measured" else 0.0

    def toil(self, hours_per_fte: float) -> dict[str, float]:
        """The measured rollout as a ``toil:`` FTE key (its own, measured TCO line); empty when not measured."""
        if self.kind != "measured" or self.measured_ref is None:
            return {}
        return {f"{TOIL}upgrade x {self.per_year:g}/year, {self.measured_ref}": self.measured_hours / hours_per_fte}

    def text(self) -> str:
        total = self.estimate_hours + self.measured_hours
        return (f"upgrades {self.per_year:g}/year (ops.upgrades_per_year) x (review {self.review_hours:g} h "
                f"(ops.upgrade_review_hours) + rollout {self.rollout}) = {total:,.1f} h/year")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"estimate_hours": self.estimate_hours, "measured_hours": self.measured_hours}


def upgrades(option: str, figures: Figures, *, nodes: int = 0, replicas: int = 0, scale: EdgeScale | None = None,
             ledger: tuple[float, str] | None = None) -> Upgrades | None:
    """The upgrade driver of ``option``; None for the managed API.

    ``nodes``: edge nodes the scenario needs; ``replicas``: engine replicas (onprem, cloud);
    ``scale``: the edge scale model, if any; ``ledger``: a measured edge upgrade drill (seconds, ledger ref).
    """
    if option == "buy":
        return None
    per_year, review = figures.value("ops.upgrades_per_year"), figures.value("ops.upgrade_review_hours")
    ids = ["ops.upgrades_per_year", "ops.upgrade_review_hours"]
    if option in ("onprem", "cloud"):
        each = sum(figures.value(i) for i in ROLLOUT_IDS)
        count = max(replicas, 1)
        seconds = count * each
        return Upgrades(option, per_year, review, seconds, "modelled",
                        f"{seconds / 3600:.3f} h modelled ({count} replica(s) one at a time x {each:,.1f} s: "
                        + " + ".join(ROLLOUT_IDS) + ")", ids + ROLLOUT_IDS)
    if scale is not None:
        try:
            p = scale.predict("upgrade", nodes)
        except (KeyError, ValueError):
            p = None
        if p is not None:
            ref = f"{scale.citation} at {nodes} node(s)"
            if p.kind == "measured":
                return Upgrades(option, per_year, review, p.seconds, "measured",
                                f"{p.seconds / 3600:.3f} h measured at {nodes} node(s)", ids, ref)
            return Upgrades(option, per_year, review, p.seconds, "modelled",
                            f"{p.seconds / 3600:.3f} h modelled for {nodes} node(s), +-{p.relative_error:.0%} "
                            f"({p.low / 3600:.3f}-{p.high / 3600:.3f} h; fitted to {scale.citation})", ids,
                            relative_error=p.relative_error)
    if ledger is not None:
        seconds, ref = ledger
        return Upgrades(option, per_year, review, seconds, "measured",
                        f"{seconds / 3600:.3f} h measured on the fleet the drill ran on ({ref}); "
                        "no scale model for this scenario's fleet", ids, ref)
    return Upgrades(option, per_year, review, None, "none",
                    "not known (no edge scale model, burden/edge-scale.json, and no measured upgrade drill): "
                    "today's per-site figure edge.sre_hours_per_site_year carries the rollouts", ids)
