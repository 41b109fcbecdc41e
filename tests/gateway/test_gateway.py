"""The gateway in process: every route, every refusal, the kill switch and its audit."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from tests.gateway.conftest import ALICE, BOB, OPS, FakeEngine, HarnessFactory
from triptyque.errors import AuditError
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.state import FileStateStore
from triptyque.monitoring.metrics import sample_value as metric_value

pytestmark = pytest.mark.anyio


async def test_models_are_listed_through_the_gateway(harness: HarnessFactory) -> None:
    async with harness() as h:
        r = await h.client.get("/v1/models", headers={"Authorization": f"Bearer {ALICE}"})
    assert r.status_code == 200
    assert r.json()["data"][0]["id"] == "tiny-llama"


async def test_a_chat_completion_is_proxied_and_counted_under_the_key_name(harness: HarnessFactory) -> None:
    async with harness() as h:
        r = await h.chat()
        metrics = await h.metrics()
        forwarded = h.engine.calls[-1]
    assert r.status_code == 200
    assert r.json()["usage"]["total_tokens"] == 8
    assert "authorization" not in forwarded.headers
    assert forwarded.headers["x-request-id"] == r.headers["x-request-id"]
    assert metric_value(metrics, "triptyque_gateway_requests_total",
                        route="/v1/chat/completions", status="200", key="alice") == 1
    assert metric_value(metrics, "triptyque_gateway_tokens_total", key="alice", kind="prompt") == 5
    assert metric_value(metrics, "triptyque_gateway_tokens_total", key="alice", kind="completion") == 3
    assert ALICE not in metrics


async def test_completions_and_embeddings_are_proxied(harness: HarnessFactory) -> None:
    async with harness() as h:
        headers = {"Authorization": f"Bearer {BOB}"}
        c = await h.client.post("/v1/completions", json={"model": "m", "prompt": "x"}, headers=headers)
        e = await h.client.post("/v1/embeddings", json={"model": "m", "input": "x"}, headers=headers)
    assert (c.status_code, e.status_code) == (200, 200)
    assert e.json()["data"][0]["embedding"] == [0.1, 0.2]


async def test_a_stream_is_passed_through_and_its_first_token_timed(harness: HarnessFactory) -> None:
    async with harness() as h:
        r = await h.chat(stream=True)
        metrics = await h.metrics()
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.count("data: ") == 4 and r.text.endswith("data: [DONE]\n\n")
    assert metric_value(metrics, "triptyque_gateway_time_to_first_token_seconds_count",
                        route="/v1/chat/completions") == 1
    assert metric_value(metrics, "triptyque_gateway_tokens_total", key="alice", kind="completion") == 2
    assert metric_value(metrics, "triptyque_gateway_in_flight_requests") == 0


@pytest.mark.parametrize(("key", "code"), [(None, "missing_api_key"), ("tq-wrong", "invalid_api_key"),
                                           (OPS, "invalid_api_key")])
async def test_a_missing_or_wrong_key_gets_401_in_openai_form(
    harness: HarnessFactory, key: str | None, code: str
) -> None:
    async with harness() as h:
        r = await h.chat(key=key)
        metrics = await h.metrics()
    assert r.status_code == 401
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["type"] == "authentication_error"
    assert metric_value(metrics, "triptyque_gateway_requests_total", status="401", key="-") == 1
    assert h.engine.calls == []


async def test_kill_refuses_new_requests_with_503_and_resume_restores_them(harness: HarnessFactory) -> None:
    async with harness() as h:
        killed = await h.admin("kill", reason="bad answers")
        refused = await h.chat()
        ready = await h.client.get("/readyz")
        metrics_killed = await h.metrics()
        resumed = await h.admin("resume", reason="fixed")
        served = await h.chat()
        ready_again = await h.client.get("/readyz")
        metrics_resumed = await h.metrics()
    assert killed.status_code == 200 and killed.json()["engaged"] is True
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "kill_switch_engaged"
    # The operator named is the admin key's name ("ops"), not the body's free text ("jane").
    assert "stopped by operator decision by ops: bad answers" in error["message"]
    assert ready.status_code == 503 and ready.json()["kill_switch_engaged"] is True
    assert metric_value(metrics_killed, "triptyque_gateway_kill_switch_engaged") == 1
    assert resumed.json()["engaged"] is False
    assert served.status_code == 200
    assert ready_again.status_code == 200
    assert metric_value(metrics_resumed, "triptyque_gateway_kill_switch_engaged") == 0
    assert (metric_value(metrics_resumed, "triptyque_gateway_kill_switch_last_change_timestamp_seconds") or 0) > 0


async def test_admin_calls_need_the_admin_key_and_a_reason(harness: HarnessFactory) -> None:
    async with harness() as h:
        with_api_key = await h.admin("kill", key=ALICE)
        long_note = await h.admin("kill", operator="x" * 101)
        no_reason = await h.admin("kill", reason="  ")
        still_serving = await h.chat()
        status = await h.client.get("/admin/status", headers={"Authorization": f"Bearer {OPS}"})
    assert with_api_key.status_code == 401
    # The body's operator is an optional note now (the admin key names the operator); its limits hold.
    assert long_note.status_code == 400 and long_note.json()["error"]["code"] == "invalid_operator"
    assert no_reason.status_code == 400 and no_reason.json()["error"]["code"] == "missing_reason"
    assert still_serving.status_code == 200
    assert status.json()["engaged"] is False


async def test_the_kill_switch_cuts_a_stream_in_flight(harness: HarnessFactory) -> None:
    engine = FakeEngine(stream_gate=asyncio.Event())
    async with harness(engine) as h:
        stream = asyncio.create_task(h.chat(stream=True))
        await asyncio.wait_for(engine.first_chunk_sent.wait(), 2)
        await h.admin("kill", reason="cut it")
        r = await asyncio.wait_for(stream, 2)
        metrics = await h.metrics()
    events = [line for line in r.text.split("\n\n") if line]
    assert events[0] == 'data: {"choices":[{"text":"he"}]}'
    last_error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert last_error["code"] == "kill_switch_engaged"
    assert "llo" not in r.text
    assert metric_value(metrics, "triptyque_gateway_streams_cut_total", reason="kill_switch") == 1
    assert metric_value(metrics, "triptyque_gateway_in_flight_requests") == 0


async def test_a_non_streamed_request_in_flight_is_refused_when_killed(harness: HarnessFactory) -> None:
    async with harness(FakeEngine(delay=1.5)) as h:
        pending = asyncio.create_task(h.chat())
        await asyncio.sleep(0.2)
        await h.admin("kill")
        r = await asyncio.wait_for(pending, 1.0)
    assert r.status_code == 503


async def test_the_kill_survives_a_restart(harness: HarnessFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "shared-state"
    async with harness(state_dir=state) as h:
        await h.admin("kill", reason="incident 42")
    async with harness(state_dir=state) as h:
        r = await h.chat()
        status = (await h.client.get("/admin/status", headers={"Authorization": f"Bearer {OPS}"})).json()
    assert r.status_code == 503
    assert status["engaged"] is True and status["reason"] == "incident 42"
    assert status["fail_closed"] is None


@pytest.mark.parametrize("damage", ["corrupt", "unreadable", "missing-with-audit", "disagrees"])
async def test_an_unreadable_state_starts_the_gateway_stopped(
    harness: HarnessFactory, tmp_path, damage: str  # type: ignore[no-untyped-def]
) -> None:
    state = tmp_path / "state"
    async with harness(state_dir=state) as h:
        await h.admin("kill")
        await h.admin("resume")
    path = state / "killswitch.json"
    if damage == "corrupt":
        path.write_text('{"engaged": fal')
    elif damage == "unreadable":
        path.unlink()
        path.mkdir()
    elif damage == "missing-with-audit":
        path.unlink()
    else:
        AuditLog(state / "audit.jsonl").append(action="kill", operator="x", reason="y")
    async with harness(state_dir=state) as h:
        r = await h.chat()
        status = (await h.client.get("/admin/status", headers={"Authorization": f"Bearer {OPS}"})).json()
        ready = await h.client.get("/readyz")
        if damage != "unreadable":
            resumed = await h.admin("resume", reason="checked the state")
            assert resumed.status_code == 200
            assert (await h.chat()).status_code == 200
    assert r.status_code == 503
    assert status["engaged"] is True and status["fail_closed"]
    assert ready.status_code == 503


async def test_every_change_is_audited_in_a_verifiable_chain(harness: HarnessFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    async with harness(state_dir=state) as h:
        await h.admin("kill", reason="one")
        await h.admin("kill", reason="again")
        await h.admin("resume", reason="two")
    log = AuditLog(state / "audit.jsonl")
    head = FileStateStore(state / "killswitch.json").load()
    assert head is not None
    verified = log.verify(expected_head=head.audit_head)
    assert verified.entries == 3
    entries = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [(e["action"], e["operator"], e["note"], e["changed"]) for e in entries] == [
        ("kill", "ops", "jane", True), ("kill", "ops", "jane", False), ("resume", "ops", "jane", True)]
    assert all(e["source"] == "gateway:ops" for e in entries)


def test_tampering_with_the_audit_log_is_detected_and_the_entry_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(tmp_path / "audit.jsonl")
    for n in range(3):
        log.append(action="kill", operator="a", reason=f"r{n}")
    lines = log.path.read_text().splitlines()
    assert log.verify(expected_head=log.head()).entries == 3

    edited = [lines[0], lines[1].replace('"r1"', '"nothing happened"'), lines[2]]
    log.path.write_text("\n".join(edited) + "\n")
    with pytest.raises(AuditError, match=r"audit.jsonl:2: entry seq=2 was modified"):
        log.verify()

    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.raises(AuditError, match=r"audit.jsonl:2: entry seq=3 does not follow"):
        log.verify()

    full_head = json.loads(lines[2])["hash"]
    log.path.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(AuditError, match="cut from the end"):
        log.verify(expected_head=full_head)


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"content": b"x" * 5000, "headers": {"content-type": "application/json"}}, 413, "body_too_large"),
    ({"content": b'{"model": ', "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
    ({"content": b'{"a": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 400, "invalid_encoding"),
    ({"content": b"model=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415,
     "unsupported_media_type"),
])
async def test_bad_bodies_get_a_clear_json_error(
    harness: HarnessFactory, kwargs: dict, status: int, code: str  # type: ignore[type-arg]
) -> None:
    async with harness() as h:
        kwargs["headers"]["Authorization"] = f"Bearer {ALICE}"
        r = await h.client.post("/v1/chat/completions", **kwargs)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert h.engine.calls == []


async def test_a_body_larger_than_declared_is_cut_at_the_limit(harness: HarnessFactory) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    async with harness() as h:
        r = await h.client.post("/v1/completions", content=chunks(), headers={
            "Authorization": f"Bearer {ALICE}", "content-type": "application/json"})
    assert r.status_code == 413


async def test_requests_over_the_concurrency_limit_get_429_with_retry_after(harness: HarnessFactory) -> None:
    async with harness(FakeEngine(delay=0.5), max_concurrent_requests=2) as h:
        busy = [asyncio.create_task(h.chat()) for _ in range(2)]
        await asyncio.sleep(0.1)
        refused = await h.chat()
        done = await asyncio.gather(*busy)
        after = await h.chat()
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "concurrency_limit"
    assert [r.status_code for r in done] == [200, 200]
    assert after.status_code == 200


async def test_a_slow_engine_times_out_with_504(harness: HarnessFactory) -> None:
    async with harness(FakeEngine(delay=1.0), first_byte_timeout_seconds=0.2) as h:
        r = await h.chat()
        metrics = await h.metrics()
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert metric_value(metrics, "triptyque_gateway_upstream_errors_total", reason="timeout") == 1


async def test_a_silent_stream_is_cut_after_the_idle_timeout(harness: HarnessFactory) -> None:
    engine = FakeEngine(stream_gate=asyncio.Event())
    async with harness(engine, idle_timeout_seconds=0.2) as h:
        r = await h.chat(stream=True)
        metrics = await h.metrics()
    assert '"code": "upstream_timeout"' in r.text
    assert metric_value(metrics, "triptyque_gateway_streams_cut_total", reason="timeout") == 1


async def test_an_engine_that_is_down_gives_502_and_not_ready(harness: HarnessFactory) -> None:
    async with harness(FakeEngine(down=True)) as h:
        r = await h.chat()
        ready = await h.client.get("/readyz")
        health = await h.client.get("/healthz")
        metrics = await h.metrics()
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unavailable"
    assert ready.status_code == 503 and ready.json()["reason"] == "engine not ready"
    assert health.status_code == 200
    assert metric_value(metrics, "triptyque_gateway_upstream_errors_total", reason="connect") == 1


async def test_unknown_routes_and_methods_answer_in_json(harness: HarnessFactory) -> None:
    async with harness() as h:
        missing = await h.client.get("/v2/nothing")
        wrong = await h.client.get("/v1/chat/completions")
        openapi = await h.client.get("/openapi.json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "/admin/kill" in openapi.json()["paths"]


async def test_logs_carry_the_request_id_and_key_name_but_never_the_key(
    harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="triptyque.gateway")
    async with harness() as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "m", "messages": []},
                                headers={"Authorization": f"Bearer {ALICE}", "x-request-id": "req-123"})
        await h.admin("kill", reason="log check")
    assert r.headers["x-request-id"] == "req-123"
    records = [rec for rec in caplog.records if getattr(rec, "event", "") == "request"]
    first = records[0]
    assert (first.request_id, first.key, first.status) == ("req-123", "alice", 200)  # type: ignore[attr-defined]
    assert ALICE not in caplog.text and OPS not in caplog.text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes from Debian's prometheus "
                    "package, which `make test` installs; only a bare `pytest` run lacks it")
async def test_the_metrics_pass_promtool_check_metrics(harness: HarnessFactory) -> None:
    async with harness() as h:
        await h.chat()
        await h.chat(stream=True)
        await h.chat(key=None)
        text = await h.metrics()
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_never_imports_vllm() -> None:
    code = "import sys, triptyque.gateway.app, triptyque.gateway.__main__; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
