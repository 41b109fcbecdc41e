"""What every target offers the CLI, and the fleet-wide admin calls they share."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

import httpx

from triptyque.spec import ServiceSpec
from triptyque.types import AdminAction, Endpoint, NodeReport, Progress

if TYPE_CHECKING:
    from triptyque.targets.hooks import DrillHooks


class Target(Protocol):
    """A deployment of the service on one kind of target (``triptyque.kinds``)."""

    name: str
    spec: ServiceSpec

    def up(self, progress: Progress) -> list[Endpoint]: ...

    def down(self, progress: Progress) -> None: ...

    def status(self) -> list[NodeReport]: ...

    def kill(self, operator: str, reason: str, *, hard: bool = False) -> list[NodeReport]: ...

    def resume(self, operator: str, reason: str, progress: Progress | None = None) -> list[NodeReport]: ...

    def drill_hooks(self) -> DrillHooks:
        """What drills need beyond this protocol; TargetError where drills cannot run here
        (the kind's ``Capability.DRILLS`` says which ahead of time)."""
        ...


class PlannedTarget(Target, Protocol):
    """A target deployed by the Pulumi program, which can show its plan (``Capability.PREVIEW``)."""

    def preview(self, progress: Progress) -> str: ...


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
                      seconds=seconds, detail="changed" if body.get("changed") else "unchanged",
                      extra={key: body[key] for key in ("audit_head", "audit_seq") if body.get(key) is not None})


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
