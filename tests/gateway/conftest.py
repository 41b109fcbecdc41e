"""In-process gateway fixtures: the real app over ASGI, a scripted engine behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from triptyque.gateway.app import create_app
from triptyque.gateway.settings import GatewaySettings
from triptyque.keys import hash_key
from triptyque.spec import KillSwitch, Limits

ALICE, BOB, OPS = "tq-alice-secret-key", "tq-bob-secret-key", "tq-ops-admin-key"


def make_settings(state_dir: Path, **limits: Any) -> GatewaySettings:
    base = dict(max_body_bytes=4096, max_concurrent_requests=4, connect_timeout_seconds=1.0,
                first_byte_timeout_seconds=2.0, idle_timeout_seconds=2.0)
    return GatewaySettings(
        port=18999, upstream_url="http://engine.test", served_model="tiny-llama",
        api_keys={"alice": hash_key(ALICE), "bob": hash_key(BOB)},
        admin_keys={"ops": hash_key(OPS)},
        limits=Limits(**(base | limits)), kill_switch=KillSwitch(),
        state_path=state_dir / "killswitch.json", audit_path=state_dir / "audit.jsonl",
        target="local", spec_hash="test", log_json=True,
    )


@dataclass
class FakeEngine:
    """A scripted OpenAI-compatible upstream for unit tests only."""

    delay: float = 0.0
    down: bool = False
    stream_gate: asyncio.Event | None = None
    first_chunk_sent: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[httpx.Request] = field(default_factory=list)
    # A test's own answer for every request but /health (a coroutine function is awaited).
    answer: Callable[[httpx.Request], Any] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.answer is not None and request.url.path != "/health":
            result = self.answer(request)
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[no-any-return]
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.delay:
            await asyncio.sleep(self.delay)
        path = request.url.path
        if path == "/health":
            return httpx.Response(200)
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "tiny-llama"}]})
        body = json.loads(request.content)
        if body.get("stream"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=self._events())
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        if path == "/v1/embeddings":
            return httpx.Response(200, json={"data": [{"embedding": [0.1, 0.2]}], "usage": usage})
        return httpx.Response(200, json={"choices": [{"text": "hello"}], "usage": usage})

    async def _events(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"text":"he"}]}\n\n'
        self.first_chunk_sent.set()
        if self.stream_gate is not None:
            await self.stream_gate.wait()
        yield b'data: {"choices":[{"text":"llo"}]}\n\n'
        yield b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2}}\n\n'
        yield b"data: [DONE]\n\n"


class Harness:
    def __init__(self, settings: GatewaySettings, engine: FakeEngine, **options: Any) -> None:
        self.settings, self.engine = settings, engine
        self.app = create_app(settings, **({"transport": httpx.MockTransport(engine.handle),
                                             "watch_interval": 0.05} | options))

    async def __aenter__(self) -> Harness:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://gateway.test")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    async def chat(self, key: str | None = ALICE, **extra: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]} | extra
        return await self.client.post("/v1/chat/completions", json=body, headers=headers)

    async def admin(self, action: str, key: str = OPS, **body: Any) -> httpx.Response:
        payload = {"operator": "jane", "reason": "test"} | body
        return await self.client.post(f"/admin/{action}", json=payload,
                                      headers={"Authorization": f"Bearer {key}"})

    async def metrics(self) -> str:
        return (await self.client.get("/metrics")).text


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def harness(tmp_path: Path) -> HarnessFactory:
    def build(engine: FakeEngine | None = None, state_dir: Path | None = None, **limits: Any) -> Harness:
        return Harness(make_settings(state_dir or tmp_path / "state", **limits), engine or FakeEngine())

    return build
