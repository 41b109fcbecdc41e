"""Issue 12 over real sockets: head size limits before buffering, with the gateway's memory bounded."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx

from bench.procs import API_KEY, rss_bytes
from tests.resilience.conftest import CHAT, read_response, status_and_json

AUTH = f"authorization: Bearer {API_KEY}\r\n".encode()

FLOOD_BYTES = 4 * 1024 * 1024  # per connection: what the old gateway gathered in memory


def _flood(port: int, head: bytes, answers: list[bytes]) -> None:
    """Send ``head`` then an endless header value; keep what the gateway answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            chunk = b"a" * 65536
            for _ in range(FLOOD_BYTES // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the gateway closed the connection: what it should do
        try:
            answers.append(read_response(sock))
        except OSError:
            answers.append(b"")


def test_a_header_flood_gets_431_and_the_gateway_memory_stays_bounded(serve: Any) -> None:
    gateway = serve(max_header_bytes=32 * 1024)
    pid = gateway.procs.started["gateway"].pid
    before = rss_bytes(pid)
    answers: list[bytes] = []
    floods = [threading.Thread(target=_flood, args=(
        gateway.port, b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer ", answers))
        for _ in range(16)]
    for flood in floods:
        flood.start()
    for flood in floods:
        flood.join(60)
    grown = rss_bytes(pid) - before
    statuses = {status_and_json(a)[0] for a in answers if a}
    assert statuses == {431}, answers[:1]
    assert status_and_json(next(a for a in answers if a))[1]["error"]["code"] == "headers_too_large"
    assert grown < 40 * 1024 * 1024, f"the gateway grew by {grown / 1e6:.0f} MB"
    assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200


def test_a_long_url_gets_414_before_it_is_buffered(serve: Any) -> None:
    gateway = serve(max_url_bytes=1024)
    answers: list[bytes] = []
    _flood(gateway.port, b"GET /v1/models?" + b"q" * 2000, answers)
    status, body = status_and_json(answers[0])
    assert status == 414 and body["error"]["code"] == "url_too_long"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * 900 + b" HTTP/1.1\r\nhost: gw\r\n" + b"x-pad: " + b"p" * 20000
                     + b"\r\nconnection: close\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
    assert "header_too_large" in gateway.log


def test_a_client_hanging_up_on_a_slow_answer_frees_its_slot_at_once(serve: Any) -> None:
    gateway = serve()
    body = json.dumps(CHAT).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n" + AUTH + b"content-type: application/json\r\n"
               b"x-fake-first-byte-delay: 30\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 10
        while gateway.metric("triptyque_gateway_in_flight_requests") != 1:
            assert time.monotonic() < deadline, "the request never reached the engine"
            time.sleep(0.02)
    hung_up = time.monotonic()
    while gateway.metric("triptyque_gateway_in_flight_requests") != 0:
        assert time.monotonic() - hung_up < 2.0, "the slot stayed taken after the client left"
        time.sleep(0.02)
    assert gateway.metric("triptyque_gateway_client_gone_total", route="/v1/chat/completions") == 1
