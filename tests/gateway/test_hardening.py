"""Issue 12: what a security probe found, each finding pinned by a test that failed before."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.gateway.conftest import ALICE, OPS, FakeEngine, Harness, HarnessFactory, make_settings
from triptyque.cli import app as cli
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.state import FileStateStore, KillState, Loaded, Observed
from triptyque.monitoring.metrics import sample_value as metric_value

pytestmark = pytest.mark.anyio


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait for a condition (polled), failing the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def status(h: Harness) -> dict[str, Any]:
    body: dict[str, Any] = (await h.client.get("/admin/status", headers={"Authorization": f"Bearer {OPS}"})).json()
    return body


def verify_cli(state: Path, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["audit", "verify", "--log", str(state / "audit.jsonl"), *extra])


# -- 2. a confirmed kill is never undone by a stale read -------------------------------------


class ScriptedStore(FileStateStore):
    """The file store, but the test decides what its watcher reports and when."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.feed: asyncio.Queue[Observed] = asyncio.Queue()
        self.idle = asyncio.Event()

    async def watch(self, interval: float) -> AsyncIterator[Observed]:
        while True:
            self.idle.set()
            observed = await self.feed.get()
            self.idle.clear()
            yield observed

    async def report(self, observed: Observed) -> None:
        """Hand ``observed`` to the watcher and wait until it has dealt with it."""
        self.idle.clear()
        await self.feed.put(observed)
        await asyncio.wait_for(self.idle.wait(), 5)


async def test_a_stale_state_read_before_a_kill_never_undoes_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = ScriptedStore(state / "killswitch.json")
    settings = make_settings(state)
    async with Harness(settings, FakeEngine(), store=store, audit=AuditLog(settings.audit_path)) as h:
        await h.admin("kill")
        await h.admin("resume")
        stale = Loaded(store.load())  # what a watcher read just before the next kill was saved
        killed = await h.admin("kill", reason="confirmed")
        assert killed.json()["engaged"] is True
        await store.report(stale)
        served = await h.chat()
        after = await status(h)
    assert served.status_code == 503
    assert after["engaged"] is True and after["reason"] == "confirmed"


# -- 3. state and chain agree; tampering is detected and fails closed ---------------------------


async def test_a_state_flipped_while_running_fails_closed(harness: HarnessFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with harness(state_dir=state) as h:
        await h.admin("kill", reason="incident")
        path = state / "killswitch.json"
        flipped = json.loads(path.read_text()) | {"engaged": False}
        path.write_text(json.dumps(flipped))

        async def failed_closed() -> bool:
            return bool((await status(h))["fail_closed"])

        await until(failed_closed)
        refused = await h.chat()
        why = (await status(h))["fail_closed"]
    assert refused.status_code == 503
    assert "says released but the last audit entry (1) is a kill" in why


async def test_a_state_flipped_across_a_restart_fails_closed_and_verify_names_it(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with harness(state_dir=state) as h:
        await h.admin("kill", reason="incident")
    path = state / "killswitch.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"engaged": False}))
    async with harness(state_dir=state) as h:
        refused = await h.chat()
        why = (await status(h))["fail_closed"]
    assert refused.status_code == 503 and "says released" in why
    result = verify_cli(state)
    assert result.exit_code == 1 and "says released but the last audit entry (1) is a kill" in result.output


async def test_a_log_cut_while_running_is_caught_at_the_next_kill(harness: HarnessFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = state / "audit.jsonl"
    async with harness(state_dir=state) as h:
        for _ in range(3):
            await h.admin("kill")
            await h.admin("resume")
        log.write_text("".join(log.read_text().splitlines(keepends=True)[:3]))
        killed = await h.admin("kill", reason="after the cut")
        refused = await h.chat()
        after = await status(h)
        metrics = await h.metrics()
    assert killed.status_code == 500 and killed.json()["error"]["code"] == "state_not_persisted"
    assert "entries were removed" in killed.json()["error"]["message"]
    assert refused.status_code == 503
    assert after["engaged"] is True and "entries were removed" in after["fail_closed"]
    assert metric_value(metrics, "triptyque_gateway_audit_sequence") == 6
    assert len(log.read_text().splitlines()) == 3, "nothing is chained onto a cut log"
    result = verify_cli(state)
    assert result.exit_code == 1 and "cut from the end" in result.output


@pytest.mark.parametrize("damage", ["truncated", "emptied", "middle modified", "tail corrupted"])
async def test_a_damaged_log_fails_closed_at_start_and_verify_names_it(
    harness: HarnessFactory, tmp_path: Path, damage: str
) -> None:
    state = tmp_path / "state"
    log = state / "audit.jsonl"
    async with harness(state_dir=state) as h:
        for _ in range(2):
            await h.admin("kill")
            await h.admin("resume")
    lines = log.read_text().splitlines(keepends=True)
    if damage == "truncated":
        log.write_text("".join(lines[:2]))
    elif damage == "emptied":
        log.write_text("")
    elif damage == "middle modified":
        log.write_text("".join([lines[0], lines[1].replace('"test"', '"nothing"'), *lines[2:]]))
    else:
        log.write_text("".join(lines[:-1]) + lines[-1][:20])
    async with harness(state_dir=state) as h:
        refused = await h.chat()
        after = await status(h)
        kill = await h.admin("kill", reason="still want it stopped")
        after_kill = await status(h)
    assert refused.status_code == 503
    assert after["engaged"] is True and after["fail_closed"]
    assert after_kill["engaged"] is True and after_kill["fail_closed"]
    if damage in ("middle modified", "tail corrupted"):
        assert kill.status_code == 500, "nothing is chained onto a broken log"
    named = {"truncated": "cut from the end", "emptied": "", "middle modified": "audit.jsonl:2: entry seq=2 was "
             "modified", "tail corrupted": "audit.jsonl:4: entry is not valid JSON"}[damage]
    result = verify_cli(state)
    assert result.exit_code != 0 and named in result.output


async def test_a_signed_chain_refuses_an_entry_forged_without_the_key(tmp_path: Path) -> None:
    state, key_file = tmp_path / "state", tmp_path / "keys" / "audit.key"
    settings = make_settings(state).model_copy(update={"audit_key_path": key_file})
    async with Harness(settings, FakeEngine()) as h:
        await h.admin("kill", reason="incident")
        # Someone who can write the state folder, not read the key, appends a consistent resume.
        entry = AuditLog(state / "audit.jsonl").append(action="resume", operator="x", reason="y",
                                                       source="cli", changed=True)
        FileStateStore(state / "killswitch.json").save(KillState(
            engaged=False, operator="x", reason="y", changed_at=entry["ts"], audit_head=entry["hash"],
            audit_seq=entry["seq"]))

        async def failed_closed() -> bool:
            return bool((await status(h))["fail_closed"])

        await until(failed_closed)
        refused = await h.chat()
    assert refused.status_code == 503
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert verify_cli(state).exit_code == 0, "without the key the forgery is a valid chain"
    result = verify_cli(state, "--key", str(key_file))
    assert result.exit_code == 1 and "entry seq=2 is not signed with the audit key" in result.output


async def test_a_signed_chain_verifies_with_its_key_and_the_state_folder_is_private(tmp_path: Path) -> None:
    state, key_file = tmp_path / "state", tmp_path / "keys" / "audit.key"
    settings = make_settings(state).model_copy(update={"audit_key_path": key_file})
    async with Harness(settings, FakeEngine()) as h:
        await h.admin("kill")
        await h.admin("resume")
        metrics = await h.metrics()
    async with Harness(settings, FakeEngine()) as h:
        served = await h.chat()
    assert served.status_code == 200
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "audit.jsonl").stat().st_mode) == 0o600
    head = json.loads((state / "audit.jsonl").read_text().splitlines()[-1])["hash"]
    assert metric_value(metrics, "triptyque_gateway_audit_sequence") == 2
    assert metric_value(metrics, "triptyque_gateway_audit_head") == int(head[:13], 16)
    result = verify_cli(state, "--key", str(key_file))
    assert result.exit_code == 0 and "2 entries, chain intact, state agrees" in result.output
    assert "signed" in result.output


async def test_a_resume_after_failing_closed_records_why_and_verify_points_at_it(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with harness(state_dir=state) as h:
        await h.admin("kill")
    (state / "killswitch.json").unlink()
    async with harness(state_dir=state) as h:
        assert (await h.admin("resume", reason="checked")).status_code == 200
        served = await h.chat()
    assert served.status_code == 200
    last = json.loads((state / "audit.jsonl").read_text().splitlines()[-1])
    assert "state is missing" in last["fail_closed"]
    result = verify_cli(state)
    assert result.exit_code == 0 and "entry 2 resumed from a fail-closed state" in result.output


def test_old_state_files_without_sequence_still_load(tmp_path: Path) -> None:
    path = tmp_path / "killswitch.json"
    path.write_text('{"engaged": true, "operator": "a", "reason": "b", "changed_at": 1.0, "audit_head": "ab"}')
    loaded = FileStateStore(path).load()
    assert loaded is not None and loaded.audit_seq is None


# -- 4. every path that takes a concurrency slot releases it ------------------------------------


def boom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("injected failure")


class Exploding:
    """A metric whose every use fails."""

    def labels(self, *_: Any) -> Any:
        raise RuntimeError("injected failure")


def _bad_content_type(request: httpx.Request) -> httpx.Response:
    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"choices":[]}\n\n'

    return httpx.Response(200, headers=[(b"content-type", "text/event-stream; x=\u20ac".encode())],
                          content=events())


def _breaking_stream(request: httpx.Request) -> httpx.Response:
    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"choices":[]}\n\n'
        raise ValueError("engine stream broke oddly")

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events())


def _cut_event_raises(mp: pytest.MonkeyPatch, engine: FakeEngine) -> None:
    mp.setattr("triptyque.gateway.stream.ProxyStream._last_event", boom)
    engine.answer = _breaking_stream


INJECTIONS: dict[str, Callable[[Any, pytest.MonkeyPatch, FakeEngine], None]] = {
    "engine header not latin-1": lambda g, mp, e: setattr(e, "answer", _bad_content_type),
    "engine stream raises": lambda g, mp, e: setattr(e, "answer", _breaking_stream),
    "transport raises": lambda g, mp, e: mp.setattr(g.proxy, "_send", boom),
    "body check raises": lambda g, mp, e: mp.setattr("triptyque.gateway.proxy.read_json", boom),
    "usage count raises": lambda g, mp, e: mp.setattr(g.accounting, "count_usage", boom),
    "stream usage count raises": lambda g, mp, e: mp.setattr(g.accounting, "count_stream_usage", boom),
    "first-token metric raises": lambda g, mp, e: mp.setattr(g.accounting.metrics, "ttft", Exploding()),
    "request log raises": lambda g, mp, e: mp.setattr(g.accounting, "record", boom),
    "stream cut event raises": lambda g, mp, e: _cut_event_raises(mp, e),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("where", list(INJECTIONS))
async def test_a_failure_at_any_step_releases_the_slot(
    harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch, where: str, stream: bool
) -> None:
    engine = FakeEngine()
    async with harness(engine, max_concurrent_requests=2) as h:
        INJECTIONS[where](h.gateway, monkeypatch, engine)
        for _ in range(3):  # more than the limit: a leaked slot would show as a 429
            try:
                r = await h.chat(stream=stream)
                assert r.status_code != 429
            except httpx.HTTPError:
                pass  # a stream cut short after its start is a broken answer, not a leak
        monkeypatch.undo()
        gauge = metric_value(await h.metrics(), "triptyque_gateway_in_flight_requests")
        assert h.gateway.in_flight == 0 and gauge == 0


# -- 5. every error is JSON, logged and counted; JSON depth is bounded --------------------------


async def test_an_internal_failure_is_a_counted_logged_json_500(
    harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness() as h:
        monkeypatch.setattr(h.gateway.proxy, "_send", boom)
        r = await h.chat()
        metrics = await h.metrics()
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["x-request-id"]
    assert metric_value(metrics, "triptyque_gateway_internal_errors_total") == 1
    assert metric_value(metrics, "triptyque_gateway_requests_total", status="500") == 1
    logged = [rec for rec in caplog.records if getattr(rec, "event", "") == "internal_error"]
    assert logged and "RuntimeError" in logged[0].getMessage() and "/" not in logged[0].getMessage().split(" at ")[1]


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_deeply_nested_json_is_refused_with_400(harness: HarnessFactory, depth: int) -> None:
    body = b'{"model": "m", "x": ' + b"[" * depth + b"]" * depth + b"}"
    async with harness(max_body_bytes=1 << 20) as h:
        r = await h.client.post("/v1/chat/completions", content=body, headers={
            "authorization": f"Bearer {ALICE}", "content-type": "application/json"})
        fine = await h.chat(extra={"a": [[[[1]]]]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_too_deep"
    assert fine.status_code == 200


async def test_non_ascii_header_values_and_a_nested_usage_are_no_500(harness: HarnessFactory) -> None:
    deep = '{"usage": ' + "[" * 100_000 + "]" * 100_000 + "}"
    engine = FakeEngine(answer=lambda request: httpx.Response(
        200, content=deep.encode(), headers={"content-type": "application/json"}))
    async with harness(engine) as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "m"}, headers=[
            (b"authorization", f"Bearer {ALICE}".encode()), (b"x-request-id", "caf\u00e9".encode()),
            (b"user-agent", "na\u00efve/1.0".encode())])
    assert r.status_code == 200
    assert r.headers["x-request-id"].isascii()


# -- 6. unauthenticated clients learn nothing about the decision --------------------------------


async def test_who_stopped_the_service_and_why_is_only_for_callers_with_a_key(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    async with harness() as h:
        await h.admin("kill", operator="jane", reason="incident 42")
        anonymous = await h.chat(key=None)
        wrong = await h.chat(key="tq-wrong")
        ready = await h.client.get("/readyz")
        known = await h.chat()
        admin = await status(h)
    for answer in (anonymous, wrong, ready):
        assert answer.status_code == 503
        assert "ops" not in answer.text and "jane" not in answer.text and "incident" not in answer.text
    # The operator is the admin key's name ("ops"); the body's "jane" is only the entry's note.
    assert "ops" in known.json()["error"]["message"] and "incident 42" in known.json()["error"]["message"]
    assert admin["operator"] == "ops" and admin["reason"] == "incident 42"


async def test_a_fail_closed_gateway_names_no_path_to_any_client(harness: HarnessFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with harness(state_dir=state) as h:
        await h.admin("kill")
    (state / "killswitch.json").write_text("{broken")
    async with harness(state_dir=state) as h:
        answers = [await h.chat(key=None), await h.chat(), await h.client.get("/readyz")]
        admin = await status(h)
    for answer in answers:
        assert answer.status_code == 503
        assert str(tmp_path) not in answer.text and "killswitch.json" not in answer.text
    assert "killswitch.json" in admin["fail_closed"]


# -- 7. control and direction characters are refused; status prints text as text ---------------


@pytest.mark.parametrize("field", ["operator", "reason"])
@pytest.mark.parametrize("text", ["two\nlines", "bell\x07", "esc\x1b[31mred", "nul\x00", "rtl\u202eevil",
                                  "zero\u200bwidth"])
async def test_control_and_bidi_characters_in_a_decision_are_refused(
    harness: HarnessFactory, field: str, text: str
) -> None:
    async with harness() as h:
        r = await h.admin("kill", **{field: text})
        after = await status(h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_text"
    assert field in r.json()["error"]["message"]
    assert after["engaged"] is False


async def test_markup_in_a_reason_is_stored_and_printed_as_plain_text(harness: HarnessFactory) -> None:
    import io

    from rich.console import Console

    import triptyque.cli as cli_module
    from triptyque.types import NodeReport

    async with harness() as h:
        r = await h.admin("kill", reason="[/nope] [bold]not bold[/bold] caf\u00e9 \u4e2d")
    assert r.status_code == 200
    out = io.StringIO()
    saved = cli_module.console
    cli_module.console = Console(file=out, width=200)
    try:
        cli_module._reports([NodeReport(node="[red]n1", url="http://x", reachable=True, engaged=True,
                                        detail=r.json()["reason"])], "status")
    finally:
        cli_module.console = saved
    assert "[/nope] [bold]not bold[/bold]" in out.getvalue() and "[red]n1" in out.getvalue()


# -- 8. a client that hangs up cancels the engine request ---------------------------------------


async def test_a_client_leaving_a_non_streamed_request_cancels_the_engine_request(harness: HarnessFactory) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return httpx.Response(200, json={})

    async with harness(FakeEngine(answer=slow), first_byte_timeout_seconds=60.0) as h:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        hang_up = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await hang_up.wait()
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
                 "query_string": b"", "root_path": "", "server": ("gw", 80), "client": ("c", 1),
                 "headers": [(b"authorization", f"Bearer {ALICE}".encode()),
                             (b"content-type", b"application/json")]}
        call = asyncio.create_task(h.app(scope, receive, send))
        await asyncio.wait_for(started.wait(), 5)
        assert h.gateway.in_flight == 1
        hang_up.set()
        await asyncio.wait_for(cancelled.wait(), 1.0)
        await asyncio.wait_for(call, 1.0)
        metrics = await h.metrics()
    assert h.gateway.in_flight == 0
    assert metric_value(metrics, "triptyque_gateway_client_gone_total", route="/v1/chat/completions") == 1


# -- 9. header hygiene ---------------------------------------------------------------------------


async def test_only_allowlisted_headers_reach_the_engine(harness: HarnessFactory) -> None:
    engine = FakeEngine()
    async with harness(engine) as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers={
            "authorization": f"Bearer {ALICE}", "cookie": "session=1", "x-api-key": "k", "forwarded": "for=1",
            "expect": "100-continue", "proxy-authorization": "x", "x-forwarded-for": "1.2.3.4",
            "accept": "application/json", "traceparent": "00-abc-def-01", "x-request-id": "rid-1"})
    assert r.status_code == 200
    sent = {k.lower() for k in engine.calls[-1].headers}
    assert sent <= {"accept", "content-type", "traceparent", "x-request-id", "host", "content-length",
                    "user-agent"}
    assert {"accept", "traceparent", "x-request-id"} <= sent
    assert engine.calls[-1].headers["x-request-id"] == "rid-1"


async def test_head_models_works_and_a_trailing_slash_is_not_redirected(harness: HarnessFactory) -> None:
    async with harness() as h:
        auth = {"Authorization": f"Bearer {ALICE}"}
        head = await h.client.head("/v1/models", headers=auth)
        slash = await h.client.get("/v1/models/", headers=auth | {"host": "evil.example"})
    assert head.status_code == 200
    assert slash.status_code == 404 and "location" not in slash.headers
    assert slash.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("status", "body", "ctype", "expected", "code"), [
    (500, b"Traceback (most recent call last):\n  File \"/opt/vllm/engine.py\"", "text/plain", 502,
     "upstream_error"),
    (302, b"", "text/html", 502, "upstream_redirect"),
    (404, b"<html>not here</html>", "text/html", 404, "upstream_refused"),
])
async def test_engine_errors_and_redirects_become_the_gateways_own_json(
    harness: HarnessFactory, status: int, body: bytes, ctype: str, expected: int, code: str
) -> None:
    engine = FakeEngine(answer=lambda request: httpx.Response(
        status, content=body, headers={"content-type": ctype, "location": "http://internal:9/x"}))
    async with harness(engine) as h:
        r = await h.chat()
    assert r.status_code == expected and r.json()["error"]["code"] == code
    assert "location" not in r.headers and "Traceback" not in r.text and "/opt" not in r.text


async def test_an_engine_json_refusal_is_passed_on(harness: HarnessFactory) -> None:
    refusal = {"object": "error", "message": "max_tokens too large", "type": "BadRequestError", "code": 400}
    async with harness(FakeEngine(answer=lambda request: httpx.Response(400, json=refusal))) as h:
        r = await h.chat()
    assert r.status_code == 400 and r.json() == refusal


def test_the_per_connection_warning_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    from triptyque.gateway.server import RateLimitedWarning

    warn = RateLimitedWarning("request headers timed out", "header_timeout", every=10.0)
    with caplog.at_level("WARNING", logger="triptyque.gateway"):
        for n in range(1000):
            warn(100.0 + n * 0.001)
        warn(111.0)
    lines = [rec for rec in caplog.records if getattr(rec, "event", "") == "header_timeout"]
    assert len(lines) == 2
    assert lines[1].__dict__["suppressed"] == 999


async def test_the_state_folder_is_private_from_the_start(harness: HarnessFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    async with harness(state_dir=state) as h:
        assert (await h.chat()).status_code == 200
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
