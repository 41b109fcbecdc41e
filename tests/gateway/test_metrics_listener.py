"""The metrics listener: key names and token counts are scraped on a port clients never reach.

A real gateway process (``python -m triptyque.gateway``) with ``metrics_port`` set listens
twice; the API port is the one behind the Service and the load balancer on Kubernetes
(triptyque/k8s/gateway.py), the metrics port has its own ClusterIP Service for Prometheus.
Serving metrics on a separate port and Service is what operator-sdk's metrics helper does
("ExposeMetricsPort creates a Kubernetes Service to expose the passed metrics port",
pkg.go.dev/github.com/operator-framework/operator-sdk/pkg/metrics).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import ALICE, make_settings
from triptyque.wait import wait_http


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    api = free_port()
    metrics = free_port()
    while metrics == api:
        metrics = free_port()
    settings = make_settings(tmp_path / "state").model_copy(update={"port": api, "metrics_port": metrics})
    path = tmp_path / "settings.json"
    path.write_text(settings.model_dump_json())
    log = tmp_path / "gateway.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "triptyque.gateway", "--settings", str(path)],
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{api}/healthz", timeout=30,
                  abort=lambda: None if process.poll() is None else f"gateway exited: {log.read_text()}")
        yield f"http://127.0.0.1:{api}", f"http://127.0.0.1:{metrics}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_with_a_metrics_listener_the_api_port_never_serves_metrics(gateway: tuple[str, str]) -> None:
    api, metrics = gateway
    answer = httpx.get(f"{api}/metrics", timeout=5)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert "triptyque_gateway" not in answer.text
    # A client's request on the API port is still served (refused here for its missing key: routed).
    assert httpx.get(f"{api}/v1/models", timeout=5).status_code == 401
    scraped = httpx.get(f"{metrics}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert "triptyque_gateway_requests_total" in scraped.text


def test_the_metrics_listener_serves_nothing_but_metrics_and_its_liveness(gateway: tuple[str, str]) -> None:
    _, metrics = gateway
    assert httpx.get(f"{metrics}/healthz", timeout=5).status_code == 200
    for path in ("/v1/models", "/admin/status", "/readyz", "/openapi.json"):
        answer = httpx.get(f"{metrics}{path}", headers={"Authorization": f"Bearer {ALICE}"}, timeout=5)
        assert answer.status_code == 404, path


def test_the_metrics_port_cannot_be_the_api_port(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_dump(mode="json") | {"metrics_port": 18999}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    result = subprocess.run([sys.executable, "-m", "triptyque.gateway", "--settings", str(path)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "metrics_port must differ from port (18999)" in result.stderr
    assert "Traceback" not in result.stderr
