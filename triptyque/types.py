"""Small types shared by every layer: progress callbacks, endpoints, per-node reports,
and how a client reaches a deployed service.

Lower layers (renderers, the edge bundle, the targets) and higher ones (burden, the
CLI) import these from here, so no module reaches upward for a shared type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Progress = Callable[[str], None]
AdminAction = Literal["kill", "resume"]


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str


@dataclass
class NodeReport:
    """One node's (or replica's) answer to a status, kill or resume call."""

    node: str
    url: str
    reachable: bool
    engaged: bool | None = None
    ready: bool | None = None
    seconds: float = 0.0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Access:
    """How a client reaches a deployed service: its gateways' base URLs, an API key, the model."""

    gateways: list[Endpoint]
    api_key: str
    model: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def body(self, max_tokens: int = 1, stream: bool = False) -> dict[str, object]:
        return {"model": self.model, "max_tokens": max_tokens, "stream": stream,
                "messages": [{"role": "user", "content": "drill"}]}
