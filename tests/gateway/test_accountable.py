"""Accountable operators (issue 16): the operator is the admin key's name, the optional
two-person rule for resuming, and incidents derived from the audit chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.gateway.conftest import FakeEngine, Harness, make_settings
from tests.support.fake_apiserver import TOKEN, FakeApiServer
from triptyque.cli import APPROVAL_PENDING, app
from triptyque.gateway import kube
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.chain import APPROVAL, KILL, RESUME
from triptyque.gateway.incidents import FAIL_CLOSED, incidents
from triptyque.gateway.settings import ClusterState, GatewaySettings
from triptyque.gateway.state import FileStateStore
from triptyque.gateway.state_k8s import ConfigMapAuditLog, ConfigMapStateStore
from triptyque.keys import hash_key
from triptyque.spec import KillSwitch

pytestmark = pytest.mark.anyio

KEYS = {"ops-a": "tq-admin-a-secret", "ops-b": "tq-admin-b-secret", "ops-c": "tq-admin-c-secret"}


def settings(state: Path, **policy: Any) -> GatewaySettings:
    return make_settings(state).model_copy(update={
        "admin_keys": {name: hash_key(key) for name, key in KEYS.items()},
        "kill_switch": KillSwitch(**policy),
    })


def gateway(state: Path, engine: FakeEngine | None = None, **policy: Any) -> Harness:
    return Harness(settings(state, **policy), engine or FakeEngine())


async def decide(h: Harness, action: str, who: str, **body: Any) -> httpx.Response:
    return await h.client.post(f"/admin/{action}", json={"reason": f"{action} by {who}"} | body,
                               headers={"Authorization": f"Bearer {KEYS[who]}"})


def chain(state: Path) -> list[dict[str, Any]]:
    return AuditLog(state / "audit.jsonl").entries_after_last()


# -- 1. the operator is the admin credential's name -------------------------------------------


async def test_a_request_with_admin_key_ops_a_is_recorded_as_ops_a_whatever_the_body_says(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with gateway(state) as h:
        killed = await decide(h, "kill", "ops-a", operator="ops-b")  # claims to be someone else
        refused = await h.chat()
        status = (await h.client.get("/admin/status", headers={"Authorization": f"Bearer {KEYS['ops-a']}"})).json()
        resumed = await decide(h, "resume", "ops-a")  # no free text at all: it is optional
    assert killed.status_code == 200 and killed.json()["operator"] == "ops-a"
    assert status["operator"] == "ops-a"
    assert "by ops-a" in refused.json()["error"]["message"] and "ops-b" not in refused.text
    assert resumed.status_code == 200 and resumed.json()["operator"] == "ops-a"
    kill, resume = chain(state)
    assert (kill["operator"], kill["note"], kill["source"]) == ("ops-a", "ops-b", "gateway:ops-a")
    assert resume["operator"] == "ops-a" and "note" not in resume
    stored = FileStateStore(state / "killswitch.json").load()
    assert stored is not None and stored.operator == "ops-a"


async def test_the_free_text_note_keeps_its_checks(tmp_path: Path) -> None:
    async with gateway(tmp_path / "state") as h:
        control = await decide(h, "kill", "ops-a", operator="esc\x1b[31m")
        too_long = await decide(h, "kill", "ops-a", operator="x" * 101)
        not_text = await decide(h, "kill", "ops-a", operator=5)
        blank = await decide(h, "kill", "ops-a", operator="   ")
    assert control.status_code == 400 and control.json()["error"]["code"] == "invalid_text"
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "invalid_operator"
    assert not_text.status_code == 400
    assert blank.status_code == 200  # blank is no note
    assert [e for e in chain(tmp_path / "state") if "note" in e] == []


# -- 2. the two-person rule -------------------------------------------------------------------


async def test_two_person_rule_one_approval_or_the_same_key_twice_does_not_resume_two_keys_do(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with gateway(state, two_person_resume=True) as h:
        started = time.perf_counter()
        killed = await decide(h, "kill", "ops-a")
        kill_seconds = time.perf_counter() - started
        first = await decide(h, "resume", "ops-a", operator="jane")
        still_refused = await h.chat()
        again = await decide(h, "resume", "ops-a")
        still_refused_again = await h.chat()
        second = await decide(h, "resume", "ops-b", operator="john")
        served = await h.chat()
    # Engaging never waits for a second person.
    assert killed.status_code == 200 and killed.json()["engaged"] is True and kill_seconds < 2
    for pending in (first, again):
        assert pending.status_code == 202
        body = pending.json()
        assert body["approval"] == "recorded" and body["approved_by"] == "ops-a" and body["engaged"] is True
        assert body["approvals_needed"] == 1 and body["deadline"] > time.time() + 800
        assert "another admin key" in body["message"] and "before" in body["message"]
    assert still_refused.status_code == 503 and still_refused_again.status_code == 503
    assert second.status_code == 200 and second.json()["engaged"] is False and second.json()["changed"] is True
    assert served.status_code == 200
    # Every attempt is in the chain; the resume names both approvers.
    entries = chain(state)
    assert [(e["action"], e["operator"]) for e in entries] == [
        (KILL, "ops-a"), (APPROVAL, "ops-a"), (APPROVAL, "ops-a"), (RESUME, "ops-b")]
    assert entries[1]["note"] == "jane" and entries[1]["approval_window"] == 900
    assert entries[-1]["approvers"] == ["ops-a", "ops-b"] and entries[-1]["note"] == "john"
    stored = FileStateStore(state / "killswitch.json").load()
    assert stored is not None and not stored.engaged and stored.audit_seq == 4


async def test_an_approval_older_than_the_window_does_not_count(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with gateway(state, two_person_resume=True, approval_window_seconds=2) as h:
        await decide(h, "kill", "ops-a")
        assert (await decide(h, "resume", "ops-a")).status_code == 202
        await asyncio.sleep(2.3)
        late = await decide(h, "resume", "ops-b")  # ops-a's approval has expired
        in_time = await decide(h, "resume", "ops-c")
    assert late.status_code == 202 and late.json()["approved_by"] == "ops-b"
    assert in_time.status_code == 200 and in_time.json()["engaged"] is False
    entries = chain(state)
    assert [e["action"] for e in entries] == [KILL, APPROVAL, APPROVAL, RESUME]
    assert entries[-1]["approvers"] == ["ops-b", "ops-c"]


async def test_approvals_before_the_last_kill_do_not_count_and_approvals_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with gateway(state, two_person_resume=True) as h:
        await decide(h, "kill", "ops-a")
        await decide(h, "resume", "ops-a")
        await decide(h, "kill", "ops-c", reason="worse")  # a new kill: earlier approvals are void
        void = await decide(h, "resume", "ops-b")
    assert void.status_code == 202
    # The approval is in the chain, not in memory: a restarted gateway counts it.
    async with gateway(state, two_person_resume=True) as h:
        after_restart = (await h.client.get("/admin/status",
                                            headers={"Authorization": f"Bearer {KEYS['ops-a']}"})).json()
        released = await decide(h, "resume", "ops-c")
    assert after_restart["engaged"] is True and after_restart["fail_closed"] is None
    assert after_restart["operator"] == "ops-c" and after_restart["reason"] == "worse"
    assert released.status_code == 200 and released.json()["engaged"] is False
    assert chain(state)[-1]["approvers"] == ["ops-b", "ops-c"]


async def test_without_the_rule_or_when_not_stopped_one_admin_resumes(tmp_path: Path) -> None:
    async with gateway(tmp_path / "one") as h:
        await decide(h, "kill", "ops-a")
        alone = await decide(h, "resume", "ops-a")
    async with gateway(tmp_path / "two", two_person_resume=True) as h:
        nothing_to_approve = await decide(h, "resume", "ops-a")
    assert alone.status_code == 200 and alone.json()["engaged"] is False
    assert nothing_to_approve.status_code == 200 and nothing_to_approve.json()["changed"] is False
    assert [e["action"] for e in chain(tmp_path / "two")] == [RESUME]


@pytest.fixture
def cluster() -> Iterator[tuple[FakeApiServer, ClusterState]]:
    server = FakeApiServer(namespace="triptyque", allowed_configmaps={"triptyque-llm-killswitch"})
    server.create_configmap("triptyque-llm-killswitch")
    server.start()
    try:
        yield server, ClusterState(namespace="triptyque", configmap="triptyque-llm-killswitch")
    finally:
        server.stop()


async def test_the_two_person_rule_reads_the_configmap_chain(
    cluster: tuple[FakeApiServer, ClusterState], tmp_path: Path,
) -> None:
    """Against a FAKE API server (tests/support/fake_apiserver.py): the ConfigMap sink's
    ``entries_after_last``; each gateway replica is a fresh process reading the shared chain."""
    server, where = cluster
    connection = kube.for_server(server.url, TOKEN)

    def replica() -> Harness:
        return Harness(settings(tmp_path / "unused", two_person_resume=True), FakeEngine(),
                       store=ConfigMapStateStore(where, connection), audit=ConfigMapAuditLog(where, connection),
                       watch_interval=None)

    async with replica() as one:
        await decide(one, "kill", "ops-a")
        first = await decide(one, "resume", "ops-a")
    async with replica() as other:
        second = await decide(other, "resume", "ops-b")
    assert first.status_code == 202 and second.status_code == 200
    sink = ConfigMapAuditLog(where, connection)
    assert [e["action"] for e in sink.entries_after_last()] == [KILL, APPROVAL, RESUME]
    assert sink.entries_after_last(KILL) == sink.entries_after_last()[1:]
    assert sink.entries_after_last(RESUME) == []


async def test_the_cluster_path_records_the_typed_name_as_a_kubeconfig_holders(
    cluster: tuple[FakeApiServer, ClusterState],
) -> None:
    from triptyque.targets.cluster import Cluster

    server, where = cluster
    await Cluster(kube.for_server(server.url, TOKEN), "triptyque", "onprem").decide(
        where.configmap, "kill", "jane", "drill")
    (entry,) = ConfigMapAuditLog(where, kube.for_server(server.url, TOKEN)).entries_after_last()
    assert entry["operator"] == "jane" and entry["source"].startswith("kubeconfig holder: triptyque kill")
    assert "in_flight" not in entry  # this process cut nothing: the gateways cut their own


# -- 3. incidents -----------------------------------------------------------------------------


async def test_a_kill_opens_an_incident_with_what_it_cut_and_the_resume_closes_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    engine = FakeEngine(stream_gate=asyncio.Event())
    async with gateway(state, engine, two_person_resume=True) as h:
        stream = asyncio.create_task(h.chat(stream=True))
        await asyncio.wait_for(engine.first_chunk_sent.wait(), 2)
        await decide(h, "kill", "ops-a", reason="bad answers")
        await asyncio.wait_for(stream, 2)
        await decide(h, "kill", "ops-b", reason="still bad")  # already stopped: same incident
        await decide(h, "resume", "ops-b")
        await decide(h, "resume", "ops-c", reason="fixed")
        await decide(h, "kill", "ops-c", reason="again")
    entries = chain(state)
    assert entries[0]["interrupted"] == 1 and entries[0]["in_flight"] == 1
    first, second = incidents(entries)
    assert (first.id, first.opened_by, first.reason, first.interrupted, first.in_flight, first.kills) == (
        1, "ops-a", "bad answers", 1, 1, 2)
    assert first.approvals == ["ops-b"] and first.approvers == ["ops-b", "ops-c"]
    assert (first.closed_by, first.close_reason, first.closed_seq) == ("ops-c", "fixed", 4)
    assert first.stopped_seconds is not None and 0 <= first.stopped_seconds < 30
    assert second.id == 5 and second.open and second.interrupted == 0 and second.stopped_seconds is None


def test_a_resume_from_a_fail_closed_state_closes_an_incident_the_gateway_opened() -> None:
    found = incidents([{"seq": 1, "ts": 10.0, "action": "resume", "operator": "ops-a", "reason": "checked",
                        "fail_closed": "state and audit log disagree"},
                       {"seq": 2, "ts": 11.0, "action": "resume", "operator": "ops-a", "reason": "noop"}])
    assert [(i.id, i.opened_by, i.reason, i.closed_by) for i in found] == [
        (1, FAIL_CLOSED, "state and audit log disagree", "ops-a")]


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """triptyque's console at 250 columns: it reads COLUMNS once, when triptyque.cli is imported
    (and pytest-xdist's workers run with COLUMNS=80), so the CliRunner's env cannot widen it."""
    from rich.console import Console

    import triptyque.cli

    monkeypatch.setattr(triptyque.cli, "console", Console(soft_wrap=True, width=250))


@pytest.mark.usefixtures("wide_console")
async def test_triptyque_incidents_lists_them_from_a_gateway_audit_log(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with gateway(state) as h:
        await decide(h, "kill", "ops-a", reason="[red]leak[/] of data")
        await decide(h, "resume", "ops-b", reason="patched")
        await decide(h, "kill", "ops-b", reason="second")
    runner = CliRunner()
    table = runner.invoke(app, ["incidents", "--log", str(state / "audit.jsonl")])
    as_json = runner.invoke(app, ["incidents", "--log", str(state / "audit.jsonl"), "--json"])
    missing = runner.invoke(app, ["incidents", "--state-dir", str(tmp_path / "none")])
    assert table.exit_code == 0, table.output
    assert "[red]leak[/] of data" in table.output  # user text printed as text, never as markup
    assert "ops-a" in table.output and "ops-b" in table.output and "open" in table.output
    assert "admin key" in table.output  # how each decision was taken (its entry's source)
    listed = json.loads(as_json.stdout)
    assert [(i["id"], i["opened_by"], i["closed_by"], i["open"]) for i in listed] == [
        (1, "ops-a", "ops-b", False), (3, "ops-b", None, True)]
    assert listed[0]["in_flight"] == 0 and listed[0]["interrupted"] == 0
    assert missing.exit_code == 1 and "no audit log" in missing.output


def test_resume_documents_its_exit_code_for_a_pending_approval() -> None:
    help_text = CliRunner().invoke(app, ["resume", "--help"], env={"COLUMNS": "200"}).output
    assert APPROVAL_PENDING == 3 and "3 when" in help_text and "waiting for a second admin" in help_text
    kill_help = CliRunner().invoke(app, ["kill", "--help"], env={"COLUMNS": "200"}).output
    assert "admin key's name" in kill_help


async def test_cli_resume_says_approval_recorded_waiting_for_a_second_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The local and edge targets' admin call (``targets.base._admin_one``) against the
    in-process gateway, then `triptyque resume` printing what it got back."""
    from types import SimpleNamespace

    import triptyque.cli
    from triptyque.targets.base import _admin_one

    async with gateway(tmp_path / "state", two_person_resume=True) as h:
        await decide(h, "kill", "ops-a")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app),
                                     headers={"Authorization": f"Bearer {KEYS['ops-a']}"}) as client:
            report = await _admin_one(client, "gw", "http://gateway.test", "resume", {"reason": "fixed"})
    deployment = SimpleNamespace(name="local", resume=lambda who, reason, progress=None: [report])
    monkeypatch.setattr(triptyque.cli, "_target", lambda *args: deployment)
    result = CliRunner().invoke(app, ["resume", "--reason", "fixed", "--state-dir", str(tmp_path)],
                                env={"COLUMNS": "250"})
    assert result.exit_code == APPROVAL_PENDING, result.output
    assert "approval recorded, waiting for a second admin" in result.output
    assert "kill switch released" not in result.output


async def test_a_draining_kill_records_what_was_in_flight_and_that_it_cut_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    engine = FakeEngine(stream_gate=asyncio.Event())
    async with gateway(state, engine, cut_streams=False) as h:
        stream = asyncio.create_task(h.chat(stream=True))
        await asyncio.wait_for(engine.first_chunk_sent.wait(), 2)
        await decide(h, "kill", "ops-a")
        assert engine.stream_gate is not None
        engine.stream_gate.set()
        finished = await asyncio.wait_for(stream, 2)
    assert "[DONE]" in finished.text
    (incident,) = incidents(chain(state))
    assert (incident.in_flight, incident.interrupted) == (1, 0)


def test_standing_approvals_are_those_within_the_window_latest_per_credential() -> None:
    from triptyque.gateway.chain import after_last
    from triptyque.gateway.killswitch import standing_approvals

    entries = [{"seq": 1, "action": KILL, "operator": "ops-a", "ts": 0.0},
               {"seq": 2, "action": APPROVAL, "operator": "ops-a", "ts": 10.0},
               {"seq": 3, "action": KILL, "operator": "ops-b", "ts": 20.0},
               {"seq": 4, "action": APPROVAL, "operator": "ops-b", "ts": 30.0},
               {"seq": 5, "action": APPROVAL, "operator": "ops-c", "ts": 100.0},
               {"seq": 6, "action": APPROVAL, "operator": "ops-b", "ts": 120.0},
               {"seq": 7, "action": APPROVAL, "operator": "ops-d", "ts": 999.0}]  # from a clock ahead
    since = after_last(entries, KILL, RESUME)
    assert [e["seq"] for e in since] == [4, 5, 6, 7]
    assert standing_approvals(since, now=130.0, window=60) == {"ops-c": 100.0, "ops-b": 120.0}
    assert standing_approvals(since, now=170.0, window=60) == {"ops-b": 120.0}
    assert after_last(entries, RESUME) == entries
