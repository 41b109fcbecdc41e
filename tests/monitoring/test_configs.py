"""Prometheus and Alertmanager configs for local and edge: valid, and working when started."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.monitoring.conftest import load_yaml, run, started, tool, wait_until_ok
from triptyque.monitoring import config, edge, local
from triptyque.monitoring.local import LocalMonitoring
from triptyque.spec import ServiceSpec

INVENTORY = [("edge-1", "10.0.0.11"), ("edge-2", "10.0.0.12"), ("edge-v6", "fd00::13")]


@pytest.fixture
def rendered(local_spec: ServiceSpec, tmp_path: Path) -> LocalMonitoring:
    return local.render(local_spec, tmp_path / "monitoring", gateway="127.0.0.1:28031",
                        engine="127.0.0.1:28032", alertmanager="127.0.0.1:28033",
                        webhook="127.0.0.1:28034")


def scrape_jobs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in document["scrape_configs"]}


def test_promtool_accepts_the_local_prometheus_config(
    rendered: LocalMonitoring, promtool: str
) -> None:
    result = run([promtool, "check", "config", str(rendered.prometheus_config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") >= 3  # the config and both rule files


def test_the_local_config_scrapes_gateway_and_engine_every_two_seconds(
    rendered: LocalMonitoring,
) -> None:
    document = load_yaml(rendered.prometheus_config)
    assert document["global"]["scrape_interval"] == "2s"
    assert document["global"]["evaluation_interval"] == "2s"
    jobs = scrape_jobs(document)
    assert set(jobs) == {"triptyque-gateway", "vllm"}
    assert jobs["triptyque-gateway"]["static_configs"] == [
        {"targets": ["127.0.0.1:28031"], "labels": {"node": "local"}}]
    assert jobs["vllm"]["static_configs"] == [
        {"targets": ["127.0.0.1:28032"], "labels": {"node": "local"}}]
    assert document["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["127.0.0.1:28033"]}]}]
    assert document["rule_files"] == [str(p) for p in rendered.rule_files]
    assert all(p.is_absolute() and p.is_file() for p in rendered.rule_files)


def test_the_local_rules_use_the_local_for_windows(rendered: LocalMonitoring) -> None:
    alerts = load_yaml(rendered.rule_files[1])["groups"]
    holds = {r["alert"]: r["for"] for g in alerts for r in g["rules"]}
    assert holds["KillSwitchEngaged"] == config.LOCAL.hold("KillSwitchEngaged") == "4s"
    assert holds["EngineDown"] == config.LOCAL.hold("EngineDown") == "10s"
    jobs_watched = {r["labels"]["job"] for g in alerts for r in g["rules"]
                    if r["alert"] == "ScrapeJobAbsent"}
    assert jobs_watched == {"triptyque-gateway", "vllm"}


def test_amtool_accepts_the_local_alertmanager_config(
    rendered: LocalMonitoring, amtool: str
) -> None:
    result = run([amtool, "check-config", str(rendered.alertmanager_config)])
    assert result.returncode == 0, result.stdout + result.stderr
    document = load_yaml(rendered.alertmanager_config)
    assert document["receivers"][0]["webhook_configs"] == [
        {"url": "http://127.0.0.1:28034/alerts", "send_resolved": True}]
    assert document["route"]["group_wait"] == "1s"


def test_amtool_rejects_a_route_to_a_missing_receiver(
    rendered: LocalMonitoring, amtool: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(rendered.alertmanager_config.read_text().replace(
        "receiver: webhook", "receiver: nobody", 1))
    assert run([amtool, "check-config", str(broken)]).returncode != 0


@pytest.fixture
def edge_config(spec: ServiceSpec, tmp_path: Path) -> Path:
    return edge.render(spec, INVENTORY, tmp_path / "edge")


def test_promtool_accepts_the_edge_prometheus_config(edge_config: Path, promtool: str) -> None:
    result = run([promtool, "check", "config", str(edge_config)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_edge_config_scrapes_every_inventory_node_on_the_spec_ports(
    edge_config: Path, spec: ServiceSpec
) -> None:
    document = load_yaml(edge_config)
    assert document["global"]["scrape_interval"] == config.PRODUCTION.scrape_interval
    jobs = scrape_jobs(document)
    ports = {"triptyque-gateway": spec.gateway.port, "vllm": spec.engine.port, "node": 9100}
    assert set(jobs) == set(ports)
    for job, port in ports.items():
        (sd_file,) = jobs[job]["file_sd_configs"][0]["files"]
        groups = json.loads((edge_config.parent / sd_file).read_text())
        assert groups == [
            {"targets": [f"10.0.0.11:{port}"], "labels": {"node": "edge-1"}},
            {"targets": [f"10.0.0.12:{port}"], "labels": {"node": "edge-2"}},
            {"targets": [f"[fd00::13]:{port}"], "labels": {"node": "edge-v6"}},
        ]
    assert all(not Path(p).is_absolute() for p in document["rule_files"])


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    return response.json()["data"]


def test_a_real_prometheus_loads_the_local_config_and_every_rule(
    rendered: LocalMonitoring, tmp_path: Path
) -> None:
    argv = rendered.prometheus_argv("127.0.0.1:28030", tmp_path / "tsdb", tool("prometheus"))
    log = tmp_path / "prometheus.log"
    with started(argv, log) as process:
        wait_until_ok("http://127.0.0.1:28030/-/ready", process, log)
        deadline = time.monotonic() + 15
        while True:
            loaded = _get("http://127.0.0.1:28030/api/v1/rules")["groups"]
            targets = _get("http://127.0.0.1:28030/api/v1/targets")["activeTargets"]
            evaluated = all(g["lastEvaluation"] > "2000" for g in loaded)
            if (evaluated and targets and all(t["lastScrape"] > "2000" for t in targets)) or (
                    time.monotonic() > deadline):
                break
            time.sleep(0.5)
    assert len(loaded) == 7
    assert all(r["health"] == "ok" for g in loaded for r in g["rules"]), loaded
    assert {(t["labels"]["job"], t["labels"]["node"], t["health"]) for t in targets} == {
        ("triptyque-gateway", "local", "down"), ("vllm", "local", "down")}


def _post_alerts(alerts: list[dict[str, Any]]) -> None:
    response = httpx.post("http://127.0.0.1:28040/api/v2/alerts", json=alerts, timeout=5)
    response.raise_for_status()


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, "service": "triptyque-llm",
                       **labels},
            "annotations": {"summary": name}}


def _received(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_alertmanager_delivers_to_the_webhook_file_and_holds_back_inhibited_alerts(
    local_spec: ServiceSpec, tmp_path: Path
) -> None:
    import sys

    monitoring = local.render(local_spec, tmp_path / "monitoring", gateway="127.0.0.1:28031",
                              engine="127.0.0.1:28032", alertmanager="127.0.0.1:28040",
                              webhook="127.0.0.1:28041")
    out = tmp_path / "alerts.jsonl"
    webhook = [sys.executable, "-m", "triptyque.monitoring.webhook", "--host", "127.0.0.1",
               "--port", "28041", "--out", str(out)]
    am_argv = monitoring.alertmanager_argv("127.0.0.1:28040", tmp_path / "am",
                                           tool("prometheus-alertmanager", "alertmanager"))
    with (
        started(webhook, tmp_path / "webhook.log") as hook,
        started(am_argv, tmp_path / "alertmanager.log") as alertmanager,
    ):
        wait_until_ok("http://127.0.0.1:28041/healthz", hook, tmp_path / "webhook.log")
        wait_until_ok("http://127.0.0.1:28040/-/ready", alertmanager, tmp_path / "alertmanager.log")
        _post_alerts([
            _alert("KillSwitchEngaged", "warning", node="local", instance="127.0.0.1:28031"),
            _alert("AvailabilityBudgetBurn", "critical", slo="availability"),
            _alert("EngineDown", "critical", node="local", instance="127.0.0.1:28032"),
        ])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _received(out):
            time.sleep(0.2)
        time.sleep(config.seconds(config.LOCAL.group_interval) + 0.5)
        received = _received(out)
    names = [a["labels"]["alertname"] for n in received for a in n["alerts"]]
    assert names == ["KillSwitchEngaged"]
    assert received[0]["receiver"] == "webhook"
    assert received[0]["status"] == "firing"
