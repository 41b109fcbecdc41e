"""The local Alertmanager receiver, in process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from triptyque.monitoring.webhook import create_app

NOTIFICATION = {
    "version": "4", "status": "firing", "receiver": "webhook", "groupKey": "{}:{}",
    "alerts": [{"status": "firing", "labels": {"alertname": "KillSwitchEngaged"},
                "annotations": {"summary": "Kill switch engaged on local"}}],
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(tmp_path / "out" / "alerts.jsonl")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hook") as c,
    ):
        yield c


@pytest.mark.anyio
async def test_each_notification_is_appended_as_one_json_line(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "alerts.jsonl"
    assert out.read_text() == ""
    for status in ("firing", "resolved"):
        response = await client.post("/alerts", json={**NOTIFICATION, "status": status})
        assert response.status_code == 200
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {**NOTIFICATION, "status": "firing"}, {**NOTIFICATION, "status": "resolved"}]


@pytest.mark.anyio
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
async def test_a_body_that_is_not_a_json_object_is_refused_and_not_written(
    client: httpx.AsyncClient, tmp_path: Path, body: bytes
) -> None:
    response = await client.post("/alerts", content=body)
    assert response.status_code == 400
    assert (tmp_path / "out" / "alerts.jsonl").read_text() == ""


@pytest.mark.anyio
async def test_health_answers_once_serving(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
