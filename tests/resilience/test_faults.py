"""Faults around a running gateway: the engine dies or stalls, the kill-switch state breaks,
the disk fills up, the audit log is edited. Real processes, real files, real tmpfs mounts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.resilience.conftest import CHAT, run_cli
from tests.support import ROOT
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.state import FileStateStore, KillState

STREAM = CHAT | {"max_tokens": 50, "stream": True}


def events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data: ")]


# ---- the engine ---------------------------------------------------------------------------


def test_an_engine_killed_mid_stream_ends_the_stream_with_an_error_event_and_the_gateway_stays_up(
    serve: Any,
) -> None:
    gateway = serve()
    received: list[str] = []
    with gateway.client() as client, client.stream(
            "POST", "/v1/chat/completions", json=STREAM, headers={"x-fake-token-interval": "0.05"}) as r:
        for line in r.iter_lines():
            received.append(line)
            if len(received) == 1:
                gateway.kill_engine()
    tail = events("\n".join(received))
    assert r.status_code == 200
    assert '"delta"' in tail[0]
    assert json.loads(tail[-2])["error"]["code"] == "upstream_stream_broken"
    assert tail[-1] == "[DONE]"
    assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
    with gateway.client() as client:
        after = client.post("/v1/chat/completions", json=CHAT)
    assert after.status_code == 502 and after.json()["error"]["code"] == "upstream_unavailable"
    assert gateway.metric("triptyque_gateway_streams_cut_total", reason="upstream") == 1
    assert gateway.metric("triptyque_gateway_upstream_errors_total", reason="protocol") == 1
    assert gateway.metric("triptyque_gateway_upstream_errors_total", reason="connect") == 1
    assert gateway.metric("triptyque_gateway_in_flight_requests") == 0


def test_an_engine_slower_than_the_first_byte_timeout_gets_504_on_time(serve: Any) -> None:
    gateway = serve(first_byte_timeout_seconds=0.5)
    with gateway.client() as client:
        started = time.monotonic()
        r = client.post("/v1/chat/completions", json=CHAT, headers={"x-fake-first-byte-delay": "5"})
        waited = time.monotonic() - started
        fine = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert 0.45 < waited < 2.0
    assert fine.status_code == 200
    assert gateway.metric("triptyque_gateway_upstream_errors_total", reason="timeout") == 1


def test_an_engine_that_goes_silent_mid_stream_is_cut_at_the_idle_timeout(serve: Any) -> None:
    gateway = serve(idle_timeout_seconds=0.5)
    with gateway.client() as client:
        started = time.monotonic()
        r = client.post("/v1/chat/completions", json=STREAM, headers={"x-fake-token-interval": "5"})
        waited = time.monotonic() - started
    tail = events(r.text)
    assert '"delta"' in tail[0]
    assert json.loads(tail[-2])["error"]["code"] == "upstream_timeout"
    assert 0.45 < waited < 2.0
    assert gateway.metric("triptyque_gateway_streams_cut_total", reason="timeout") == 1


# ---- the kill-switch state ------------------------------------------------------------------


def test_a_state_file_corrupted_while_serving_stops_serving_and_says_why(serve: Any) -> None:
    gateway = serve()
    assert gateway.admin("kill").status_code == 200 and gateway.admin("resume").status_code == 200
    (gateway.state_dir / "killswitch.json").write_text('{"engaged": fal')
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not gateway.status()["engaged"]:
        time.sleep(0.1)
    status = gateway.status()
    with gateway.client() as client:
        refused = client.post("/v1/chat/completions", json=CHAT)
    assert status["engaged"] is True
    assert "killswitch.json is corrupt" in status["fail_closed"]
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "kill_switch_engaged"
    errors = [json.loads(line) for line in gateway.log.splitlines()
              if line.startswith("{") and '"level": "error"' in line]
    assert any("fails closed" in e["msg"] and "corrupt" in e["msg"] for e in errors)
    assert gateway.admin("resume", "state checked and rewritten").status_code == 200
    with gateway.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


@pytest.mark.parametrize("damage", ["garbage", "a folder", "not JSON at all", "an empty file"])
def test_a_gateway_started_on_a_broken_state_file_starts_stopped_and_says_why(
    serve: Any, tmp_path: Path, damage: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "killswitch.json"
    if damage == "a folder":
        path.mkdir()
    else:
        path.write_bytes({"garbage": b"\xff\xfe\x00\x01", "not JSON at all": b"engaged: no",
                          "an empty file": b""}[damage])
    gateway = serve(state_dir=state)
    status = gateway.status()
    with gateway.client() as client:
        refused = client.post("/v1/chat/completions", json=CHAT)
    assert status["engaged"] is True and str(path) in status["fail_closed"]
    assert refused.status_code == 503
    assert httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 503
    assert '"level": "error"' in gateway.log and "fails closed" in gateway.log


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    """Mount small tmpfs file systems (needs root, as CI has); unmounted after the test."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{len(mounts)}"
        where.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> None:
    """Write to ``folder`` until its file system has no byte left."""
    with (folder / "filler").open("wb", buffering=0) as handle:
        for block in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    handle.write(b"\0" * block)
            except OSError:
                continue


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != "filler"}


def test_a_read_only_state_folder_keeps_the_kill_in_force_and_refuses_the_resume(
    tmpfs: Any, serve: Any
) -> None:
    mount = tmpfs("1m")
    gateway = serve(state_dir=mount / "state")
    assert gateway.admin("kill").status_code == 200 and gateway.admin("resume").status_code == 200
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    try:
        kill = gateway.admin("kill", "incident while the disk is read-only")
        with gateway.client() as client:
            refused = client.post("/v1/chat/completions", json=CHAT)
        resume = gateway.admin("resume", "try to resume")
        time.sleep(0.7)  # one state-watch interval (0.5 s): the watcher must not undo the kill
        with gateway.client() as client:
            still_refused = client.post("/v1/chat/completions", json=CHAT)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
    assert kill.status_code == 500 and kill.json()["error"]["code"] == "state_not_persisted"
    assert "serving stopped, but the decision was not persisted" in kill.json()["error"]["message"]
    assert refused.status_code == 503
    assert resume.status_code == 500 and "still stopped" in resume.json()["error"]["message"]
    assert still_refused.status_code == 503
    assert gateway.status()["engaged"] is True


def _audit_ending_near_a_page_boundary(state: Path, room: int) -> None:
    """An audit log (and the state that matches it) leaving ``room`` bytes in its last 4 KiB page,
    so that the next entry is written in part before the disk is full."""
    entry = {"action": "resume", "operator": "tester", "source": "test", "changed": True}
    probe = AuditLog(state / "probe.jsonl")
    probe.append(**entry, reason="")
    empty_reason_line = probe.path.stat().st_size
    probe.path.unlink()
    log = AuditLog(state / "audit.jsonl")
    log.append(**entry | {"action": "kill"}, reason="first")
    pad = 4096 - room - log.path.stat().st_size - empty_reason_line
    last = log.append(**entry, reason="x" * pad)
    FileStateStore(state / "killswitch.json").save(KillState(
        engaged=False, operator="tester", reason=last["reason"], changed_at=last["ts"],
        audit_head=last["hash"]))


def test_a_full_disk_while_auditing_a_kill_leaves_state_and_audit_exactly_as_they_were(
    tmpfs: Any, serve: Any
) -> None:
    mount = tmpfs("64k")
    state = mount / "state"
    state.mkdir()
    _audit_ending_near_a_page_boundary(state, room=40)
    assert 4000 < (state / "audit.jsonl").stat().st_size < 4096
    gateway = serve(state_dir=state)
    assert gateway.status()["engaged"] is False and gateway.status()["fail_closed"] is None
    fill(mount)
    before = files(state)
    kill = gateway.admin("kill", "disk is full")
    with gateway.client() as client:
        refused = client.post("/v1/chat/completions", json=CHAT)
    after = files(state)
    assert kill.status_code == 500 and kill.json()["error"]["code"] == "state_not_persisted"
    assert "No space left on device" in kill.json()["error"]["message"]
    assert refused.status_code == 503
    assert after == before, "a failed write must leave no partial audit entry and no temporary file"
    stored = FileStateStore(state / "killswitch.json").load()
    assert stored is not None
    assert AuditLog(state / "audit.jsonl").verify(stored.audit_head).entries == 2


def test_a_full_disk_while_saving_the_state_leaves_the_old_state_whole_and_fails_closed_on_restart(
    tmpfs: Any, serve: Any
) -> None:
    mount = tmpfs("64k")
    gateway = serve(state_dir=mount / "state")
    assert gateway.admin("kill").status_code == 200 and gateway.admin("resume").status_code == 200
    old_state = (mount / "state" / "killswitch.json").read_bytes()
    fill(mount)
    kill = gateway.admin("kill", "disk is full")
    assert kill.status_code == 500 and "No space left on device" in kill.json()["error"]["message"]
    assert (mount / "state" / "killswitch.json").read_bytes() == old_state
    assert sorted(p.name for p in (mount / "state").iterdir()) == ["audit.jsonl", "killswitch.json"]
    assert AuditLog(mount / "state" / "audit.jsonl").verify().entries == 3
    (mount / "filler").unlink()
    gateway.restart_gateway()
    status = gateway.status()
    assert status["engaged"] is True and "disagree" in status["fail_closed"]


# ---- the audit log ------------------------------------------------------------------------------


def test_a_tampered_audit_log_fails_verification_and_names_the_entry(serve: Any, tmp_path: Path) -> None:
    gateway = serve(state_dir=tmp_path / "root" / "local" / "state")
    for action, reason in (("kill", "one"), ("resume", "two"), ("kill", "three"), ("resume", "four")):
        assert gateway.admin(action, reason).status_code == 200
    audit = gateway.state_dir / "audit.jsonl"
    intact = run_cli("audit", "verify", "--state-dir", str(tmp_path / "root"), cwd=ROOT)
    assert intact.returncode == 0 and "4 entries, chain intact" in intact.stdout
    lines = audit.read_text().splitlines()
    lines[2] = lines[2].replace('"three"', '"nothing to see"')
    audit.write_text("\n".join(lines) + "\n")
    edited = run_cli("audit", "verify", "--state-dir", str(tmp_path / "root"), cwd=ROOT)
    audit.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    removed = run_cli("audit", "verify", "--state-dir", str(tmp_path / "root"), cwd=ROOT)
    for result in (edited, removed):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
    assert "audit.jsonl:3: entry seq=3 was modified after it was written" in edited.stderr
    assert "audit.jsonl:2: entry seq=3 does not follow the previous entry" in removed.stderr
    assert os.path.exists(audit)
