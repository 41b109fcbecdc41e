"""A gateway killed (SIGKILL) and restarted under load loses no acknowledged kill or resume."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.procs import ADMIN_KEY, API_KEY
from tests.resilience.conftest import CHAT
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.state import FileStateStore


class Load:
    """Two clients sending chat requests back to back until stopped; answers counted by status."""

    def __init__(self, url: str) -> None:
        self.url, self.statuses, self.stop = url, Counter[int](), threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            while not self.stop.is_set():
                try:
                    self.statuses[client.post("/v1/chat/completions", json=CHAT).status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1  # the gateway is restarting
                    time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def serving(gateway: Any) -> bool:
    with gateway.client() as client:
        status: int = client.post("/v1/chat/completions", json=CHAT).status_code
    assert status in (200, 503), status
    return status == 200


def test_restarts_under_load_lose_no_acknowledged_kill_or_resume(serve: Any, tmp_path: Path) -> None:
    gateway = serve(state_dir=tmp_path / "state")
    engaged, acknowledged = False, 0
    with Load(gateway.url) as load:
        for step in range(12):
            action = "resume" if engaged else "kill"
            response = gateway.admin(action, f"step {step}")
            assert response.status_code == 200, response.text
            engaged, acknowledged = action == "kill", acknowledged + 1
            if step % 3 == 2:
                gateway.restart_gateway()
                status = gateway.status()
                assert (status["engaged"], status["fail_closed"]) == (engaged, None), (step, status)
                assert serving(gateway) is not engaged
    assert load.statuses[200] > 0 and load.statuses[503] > 0
    assert not [s for s in load.statuses if s >= 500 and s != 503], load.statuses
    stored = FileStateStore(gateway.state_dir / "killswitch.json").load()
    assert stored is not None and stored.engaged is engaged
    assert AuditLog(gateway.state_dir / "audit.jsonl").verify(stored.audit_head).entries == acknowledged


def test_a_gateway_killed_during_an_unacknowledged_change_restarts_in_a_state_it_can_explain(
    serve: Any, tmp_path: Path
) -> None:
    """The change in flight may be lost or kept, but never half-kept in a way that serves by mistake.

    Killed between the audit append and the state save, the gateway restarts stopped
    (fail closed: state and audit disagree) even if the change was a resume.
    """
    gateway = serve(state_dir=tmp_path / "state")
    engaged = False
    with Load(gateway.url):
        for delay in (0.0, 0.002, 0.005, 0.01, 0.02):
            action = "resume" if engaged else "kill"
            sender = threading.Thread(target=lambda a=action: _admin_quietly(gateway.url, a), daemon=True)
            sender.start()
            time.sleep(delay)
            gateway.restart_gateway()
            sender.join(10)
            status = gateway.status()
            if status["fail_closed"]:
                assert status["engaged"] is True and "disagree" in status["fail_closed"]
                assert gateway.admin("kill", "after a crash: confirm the stop").status_code == 200
                engaged = True
            else:
                assert status["engaged"] in (engaged, action == "kill")
                engaged = status["engaged"]
            assert serving(gateway) is not engaged


def _admin_quietly(url: str, action: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{url}/admin/{action}", json={"operator": "tester", "reason": "in flight"},
                   headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
