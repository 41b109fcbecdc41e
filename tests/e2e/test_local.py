"""End to end on the local target: real vLLM (CPU), real gateway, real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from triptyque.demo import prometheus_value, wait_for_prometheus
from triptyque.gateway.audit import AuditLog
from triptyque.gateway.state import FileStateStore
from triptyque.targets.local import LocalTarget
from triptyque.wait import wait_until

pytestmark = pytest.mark.e2e
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}


@pytest.fixture
def client(local_target: LocalTarget) -> Iterator[httpx.Client]:
    key = local_target.secrets()["api_key"]
    with httpx.Client(base_url=local_target.gateway_url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def chat(client: httpx.Client, target: LocalTarget, **extra: object) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": target.spec.model.served_name, **CHAT, **extra})


def test_a_chat_completion_is_served_by_the_real_engine(local_target: LocalTarget, client: httpx.Client) -> None:
    r = chat(client, local_target)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-llama"
    assert body["usage"]["completion_tokens"] == 8
    assert body["system_fingerprint"].startswith("vllm-")


def test_a_streamed_chat_arrives_as_server_sent_events(local_target: LocalTarget, client: httpx.Client) -> None:
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "tiny-llama", **CHAT, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert r.status_code == 200
    assert events[-1] == "data: [DONE]"
    assert len(events) >= 9
    usage = json.loads(events[-2].removeprefix("data: "))["usage"]
    assert usage["completion_tokens"] == 8


def test_a_request_without_a_valid_key_gets_401(local_target: LocalTarget) -> None:
    r = httpx.post(f"{local_target.gateway_url}/v1/chat/completions", json=CHAT,
                   headers={"Authorization": "Bearer tq-not-a-key"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_prometheus_scrapes_the_gateway_and_the_engine(local_target: LocalTarget, client: httpx.Client) -> None:
    chat(client, local_target)
    prom = local_target.prometheus_url
    wait_for_prometheus(prom, 'up{job="triptyque-gateway"}', 1.0)
    wait_for_prometheus(prom, 'up{job="vllm"}', 1.0)
    def scraped() -> tuple[float, float] | None:
        served = prometheus_value(prom, 'sum(triptyque_gateway_requests_total{status="200",key="demo"})')
        generated = prometheus_value(prom, "sum(vllm:generation_tokens_total)")
        return (served, generated) if served and generated else None

    served, generated = wait_until(scraped, timeout=20, what="requests and tokens scraped", interval=0.5)
    assert served >= 1
    assert generated and generated >= 8


def test_kill_stops_serving_within_a_second_and_resume_restores_it(
    local_target: LocalTarget, client: httpx.Client
) -> None:
    started = time.perf_counter()
    report = local_target.kill("e2e", "kill-switch test")[0]
    refused = chat(client, local_target)
    elapsed = time.perf_counter() - started
    assert report.reachable and report.engaged
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "kill_switch_engaged"
    assert elapsed < 1.0
    assert httpx.get(f"{local_target.gateway_url}/readyz").status_code == 503
    wait_for_prometheus(local_target.prometheus_url, "triptyque_gateway_kill_switch_engaged", 1.0)

    local_target.resume("e2e", "test done")
    assert chat(client, local_target).status_code == 200
    wait_for_prometheus(local_target.prometheus_url, "triptyque_gateway_kill_switch_engaged", 0.0)


def test_the_audit_log_verifies_with_the_cli(local_target: LocalTarget) -> None:
    state_root = local_target.root.parent
    result = subprocess.run([sys.executable, "-m", "triptyque.cli", "audit", "verify", "--state-dir",
                             str(state_root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "chain intact" in result.stdout
    stored = FileStateStore(local_target.state_dir / "killswitch.json").load()
    assert stored is not None
    assert AuditLog(local_target.state_dir / "audit.jsonl").verify(stored.audit_head).entries >= 2


def test_a_gateway_restarted_while_killed_stays_stopped(local_target: LocalTarget, client: httpx.Client) -> None:
    local_target.kill("e2e", "before restart")
    processes = local_target.processes
    argv = json.loads((processes.run_dir / "gateway.json").read_text())["argv"]
    processes.stop("gateway")
    processes.start("gateway", argv)
    local_target._wait("gateway", f"{local_target.gateway_url}/healthz", 30, lambda _m: None)
    assert chat(client, local_target).status_code == 503
    status = local_target.status()[0]
    assert status.engaged is True and status.ready is False
    local_target.resume("e2e", "after restart")
    assert chat(client, local_target).status_code == 200


def test_a_hard_kill_stops_the_engine_and_resume_brings_it_back(
    local_target: LocalTarget, client: httpx.Client
) -> None:
    report = local_target.kill("e2e", "free the machine", hard=True)[0]
    assert report.engaged and report.extra["engine_stopped"] is True
    engine = local_target.processes.get("engine")
    assert engine is None or not engine.alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{local_target.engine_url}/health")
    local_target.resume("e2e", "engine back")
    assert chat(client, local_target).status_code == 200


def delivered(target: LocalTarget, alertname: str, timeout: float) -> dict[str, object]:
    """Wait until Alertmanager has delivered a firing ``alertname`` to the local webhook file."""

    def firing() -> dict[str, object] | None:
        if target.alerts_file.exists():
            for line in target.alerts_file.read_text().splitlines():
                for alert in json.loads(line).get("alerts", []):
                    if alert["labels"]["alertname"] == alertname and alert["status"] == "firing":
                        return dict(alert)
        return None

    return wait_until(firing, timeout=timeout, what=f"{alertname} delivered", interval=0.5)


def test_engaging_the_kill_switch_fires_an_alert_that_alertmanager_delivers(local_target: LocalTarget) -> None:
    local_target.kill("e2e", "alert test")
    try:
        alert = delivered(local_target, "KillSwitchEngaged", 60)
    finally:
        local_target.resume("e2e", "alert test done")
    labels = alert["labels"]
    assert isinstance(labels, dict) and labels["severity"] and labels["job"] == "triptyque-gateway"
    annotations = alert["annotations"]
    assert isinstance(annotations, dict)
    assert "runbook.md#" in annotations["runbook_url"] and annotations["summary"]


def test_stopping_the_engine_fires_engine_down(local_target: LocalTarget, client: httpx.Client) -> None:
    local_target.processes.stop("engine")
    try:
        alert = delivered(local_target, "EngineDown", 90)
        firing = prometheus_value(local_target.prometheus_url, 'ALERTS{alertname="EngineDown",alertstate="firing"}')
    finally:
        local_target.resume("e2e", "engine restarted")
    assert alert["labels"]["job"] == "vllm"  # type: ignore[index]
    assert firing == 1
    assert chat(client, local_target).status_code == 200
