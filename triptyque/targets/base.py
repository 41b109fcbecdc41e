"""What every target offers the CLI, and the fleet-wide admin calls they share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import httpx

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


class Target(Protocol):
    name: str

    def up(self, progress: Progress) -> list[Endpoint]: ...

    def down(self, progress: Progress) -> None: ...

    def status(self) -> list[NodeReport]: ...

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]: ...

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]: ...


async def _admin_one(
    client: httpx.AsyncClient, node: str, url: str, action: AdminAction, payload: dict[str, str]
) -> NodeReport:
    started = time.perf_counter()
    try:
        response = await client.post(f"{url}/admin/{action}", json=payload)
    except httpx.HTTPError as exc:
        return NodeReport(node, url, reachable=False, seconds=time.perf_counter() - started,
                          detail=f"unreachable: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        message = (body.get("error") or {}).get("message", response.text[:200])
        return NodeReport(node, url, reachable=True, seconds=seconds,
                          detail=f"HTTP {response.status_code}: {message}")
    return NodeReport(node, url, reachable=True, engaged=bool(body.get("engaged")),
                      seconds=seconds, detail="changed" if body.get("changed") else "unchanged")


def _tls(endpoints: list[Endpoint]) -> bool:
    """Verify certificates only where TLS is used: loading the CA bundle costs 20 ms and more
    (far more on a busy node), which a kill sent to plain-HTTP gateways should not wait for."""
    return any(e.url.startswith("https://") for e in endpoints)


async def admin_fleet(
    endpoints: list[Endpoint], admin_key: str, action: AdminAction, operator: str, reason: str,
    *, timeout: float = 5.0,
) -> list[NodeReport]:
    """Send kill or resume to every gateway at once; each report carries its own time."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    payload = {"operator": operator, "reason": reason}
    async with httpx.AsyncClient(headers=headers, timeout=timeout, verify=_tls(endpoints)) as client:
        return list(await asyncio.gather(
            *(_admin_one(client, e.name, e.url, action, payload) for e in endpoints)
        ))


async def _status_one(client: httpx.AsyncClient, node: str, url: str) -> NodeReport:
    started = time.perf_counter()
    try:
        response = await client.get(f"{url}/readyz")
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return NodeReport(node, url, reachable=False, seconds=time.perf_counter() - started,
                          detail=f"unreachable: {type(exc).__name__}")
    return NodeReport(node, url, reachable=True, engaged=bool(body.get("kill_switch_engaged")),
                      ready=response.status_code == 200, seconds=time.perf_counter() - started,
                      detail=str(body.get("reason", "")))


async def status_fleet(endpoints: list[Endpoint], *, timeout: float = 5.0) -> list[NodeReport]:
    async with httpx.AsyncClient(timeout=timeout, verify=_tls(endpoints)) as client:
        return list(await asyncio.gather(*(_status_one(client, e.name, e.url) for e in endpoints)))
