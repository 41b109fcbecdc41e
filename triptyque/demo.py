"""The newcomer's tour of the local target: serve, stop, resume, prove it, shut down."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console

from triptyque.burden import tour
from triptyque.errors import TargetError
from triptyque.gateway.audit import AuditLog, verify_with_state
from triptyque.gateway.settings import AUDIT_FILE, STATE_FILE
from triptyque.gateway.state import FileStateStore
from triptyque.keys import audit_key
from triptyque.targets.local import LocalTarget
from triptyque.types import Progress
from triptyque.wait import WaitTimeout, wait_until


def prometheus_value(base_url: str, query: str) -> float | None:
    response = httpx.get(f"{base_url}/api/v1/query", params={"query": query}, timeout=5.0)
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for_prometheus(base_url: str, query: str, expected: float, timeout: float = 30.0) -> float:
    seen: list[float | None] = [None]

    def reached() -> bool:
        seen[0] = prometheus_value(base_url, query)
        return seen[0] == expected

    try:
        wait_until(reached, timeout=timeout, what=f"Prometheus seeing {query} == {expected}", interval=0.5)
    except WaitTimeout:
        raise TargetError(f"Prometheus did not see {query} == {expected} within {timeout:.0f} s "
                          f"(last: {seen[0]})") from None
    return expected


def run_demo(target: LocalTarget, console: Console, progress: Callable[[], Any]) -> None:
    """``progress`` returns a context manager yielding a Progress callback (a Rich status)."""
    with progress() as step:
        step_fn: Progress = step
        endpoints = tour.measured_deploy(target, step_fn)
    console.print("[bold green]local target is up[/]")
    for endpoint in endpoints:
        console.print(f"  {endpoint.name:<30} {endpoint.url}")
    try:
        _tour(target, console)
        console.print("\n[bold]5. Drills[/] (timed phase by phase, recorded in the ledger)")
        with progress() as step:
            drills = tour.run_drills(target, step)
        tour.show_drills(drills, console)
    finally:
        with progress() as step:
            target.down(step)
        console.print("[bold]local target stopped[/] (state and audit log kept in "
                      f"{target.root})")
    tour.write_report(target, console)


def _tour(target: LocalTarget, console: Console) -> None:
    secrets = target.secrets()
    client = httpx.Client(base_url=target.gateway_url, timeout=60.0,
                          headers={"Authorization": f"Bearer {secrets['api_key']}"})
    body = {"model": target.spec.model.served_name, "max_tokens": 12,
            "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
    with client:
        answer = client.post("/v1/chat/completions", json=body)
        answer.raise_for_status()
        data = answer.json()
        console.print("\n[bold]1. A chat completion through the gateway[/] (random weights, so the "
                      "text is noise; the path is real)")
        usage = {k: v for k, v in data["usage"].items() if v is not None}
        console.print(f"   status {answer.status_code}, usage {usage}, "
                      f"text {data['choices'][0]['message']['content']!r}")
        chunks = 0
        with client.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as stream:
            for line in stream.iter_lines():
                chunks += line.startswith("data: ")
        console.print(f"   streamed: {chunks} server-sent events")

        console.print("\n[bold]2. Engage the kill switch[/]")
        started = time.perf_counter()
        report = target.kill("demo", "showing the kill switch")[0]
        refused = client.post("/v1/chat/completions", json=body)
        console.print(f"   kill acknowledged in {report.seconds * 1000:.1f} ms; next request: "
                      f"[red]{refused.status_code}[/] {refused.json()['error']['message']}")
        seen = wait_for_prometheus(target.prometheus_url, "triptyque_gateway_kill_switch_engaged", 1.0)
        console.print(f"   Prometheus sees triptyque_gateway_kill_switch_engaged = {seen:.0f} "
                      f"({time.perf_counter() - started:.1f} s after the kill)")

        console.print("\n[bold]3. Resume[/]")
        target.resume("demo", "end of the demonstration")
        served = client.post("/v1/chat/completions", json=body)
        wait_for_prometheus(target.prometheus_url, "triptyque_gateway_kill_switch_engaged", 0.0)
        console.print(f"   next request: [green]{served.status_code}[/]; Prometheus sees the switch at 0")

    state = FileStateStore(target.state_dir / STATE_FILE).load()
    key = audit_key(target.audit_key_path) if target.audit_key_path.is_file() else None
    verified = verify_with_state(AuditLog(target.state_dir / AUDIT_FILE, key), state, key)
    console.print(f"\n[bold]4. Audit log[/]: {verified.entries} entries, hash chain intact and signed, "
                  f"state agrees (head {verified.head[:12]})")
