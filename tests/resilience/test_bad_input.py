"""Bad input at the gateway's HTTP entry point, sent over real sockets to the uvicorn-served gateway.

Each bad request gets a clear answer (JSON error, or the HTTP server's own 4xx for
what never reaches the app), never a 5xx, and the gateway keeps serving afterwards.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from bench.procs import API_KEY
from tests.resilience.conftest import CHAT, raw_exchange, read_response, status_and_json

AUTH = f"authorization: Bearer {API_KEY}\r\n".encode()


def post(path: bytes, body: bytes, *, ctype: bytes = b"application/json", extra: bytes = b"",
         length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    return (b"POST " + path + b" HTTP/1.1\r\nhost: gw\r\n" + AUTH + b"content-type: " + ctype + b"\r\n"
            + b"content-length: %d\r\n" % declared + extra + b"connection: close\r\n\r\n" + body)


@pytest.fixture(scope="module")
def gateway(serve_shared: Any) -> Any:
    return serve_shared(max_body_bytes=4096, idle_timeout_seconds=1.0)


def assert_still_serving(gateway: Any) -> None:
    with gateway.client() as client:
        r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("body", "ctype", "status", "code"), [
    (b'{"model": "tiny-llama", "messages": [', b"application/json", 400, "invalid_json"),
    (b"\x00\x01\x02 not json at all", b"application/json", 400, "invalid_json"),
    (b'["a", "list"]', b"application/json", 400, "invalid_json"),
    (b'{"model": "\xff\xfe\xc3\x28"}', b"application/json", 400, "invalid_encoding"),
    (b'\xef\xbb\xbf{"bom": 1}', b"application/json", 400, "invalid_json"),
    (b'{"model": "x"}', b"text/plain", 415, "unsupported_media_type"),
    (b"model=x", b"application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"model": "x"}', b"multipart/form-data; boundary=zz", 415, "unsupported_media_type"),
    (b"x" * 5000, b"application/json", 413, "body_too_large"),
])
def test_a_malformed_body_gets_a_json_error_and_the_gateway_keeps_serving(
    gateway: Any, body: bytes, ctype: bytes, status: int, code: str
) -> None:
    got, payload = status_and_json(raw_exchange(gateway.port, post(b"/v1/chat/completions", body, ctype=ctype)))
    assert (got, payload["error"]["code"]) == (status, code)
    assert_still_serving(gateway)


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(gateway: Any) -> None:
    started = time.monotonic()
    got, payload = status_and_json(raw_exchange(
        gateway.port, post(b"/v1/completions", b"{", length=50 * 1024 * 1024), timeout=5))
    assert (got, payload["error"]["code"]) == (413, "body_too_large")
    assert time.monotonic() - started < 2


def test_a_chunked_body_that_grows_past_the_limit_is_cut_with_413(gateway: Any) -> None:
    chunks = b"".join(b"400\r\n" + b" " * 1024 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    request = (b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\n" + AUTH
               + b"content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
               + chunks)
    got, payload = status_and_json(raw_exchange(gateway.port, request))
    assert (got, payload["error"]["code"]) == (413, "body_too_large")


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"GARBAGE\r\n\r\n", id="no-http-request-line"),
    pytest.param(b"GET /v1/models HTTP/9.9\r\nhost: gw\r\n\r\n", id="unknown-http-version"),
    pytest.param(b"GET /v1/models HTTP/1.1\r\nhost gw no colon\r\n\r\n", id="header-without-colon"),
    pytest.param(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: -5\r\n\r\n",
                 id="negative-content-length"),
    pytest.param(b"POST /v1/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\n"
                 b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n", id="length-and-chunked"),
    pytest.param(b"GET /\x00\x01 HTTP/1.1\r\nhost: gw\r\n\r\n", id="control-bytes-in-path"),
    pytest.param(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-bad: \xff\xfe\x00\r\n\r\n",
                 id="invalid-header-bytes"),
])
def test_a_malformed_http_request_is_refused_by_the_server_and_nothing_breaks(
    gateway: Any, request_bytes: bytes
) -> None:
    answer = raw_exchange(gateway.port, request_bytes)
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:200]
    assert_still_serving(gateway)


@pytest.mark.parametrize(("name", "headers"), [
    ("one 1 MiB header", b"x-huge: " + b"a" * (1 << 20) + b"\r\n"),
    ("ten thousand headers", b"".join(b"x-h%d: v\r\n" % n for n in range(10_000))),
    ("a 64 KiB authorization header", b"authorization: Bearer " + b"k" * 65536 + b"\r\n"),
])
def test_huge_headers_get_a_client_error_or_a_closed_connection_never_a_crash(
    gateway: Any, name: str, headers: bytes
) -> None:
    request = b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n" + headers + b"connection: close\r\n\r\n"
    answer = raw_exchange(gateway.port, request, timeout=10)
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 401, 413, 431), (name, answer[:300])
    assert_still_serving(gateway)


def test_a_wrong_method_or_route_gets_a_json_error(gateway: Any) -> None:
    with gateway.client() as client:
        wrong_method = client.delete("/v1/chat/completions")
        unknown = client.post("/v1/../../etc/passwd", json=CHAT)
        query = client.get("/v1/models?limit=" + "9" * 5000)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert query.status_code == 200


def test_a_client_that_trickles_its_body_is_timed_out_and_frees_its_slot(serve: Any) -> None:
    gateway = serve(max_concurrent_requests=1, idle_timeout_seconds=1.0)
    body = json.dumps(CHAT).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as slow:
        slow.sendall(post(b"/v1/chat/completions", body)[:-len(body)] + body[:5])
        time.sleep(0.3)
        with gateway.client() as client:
            while_held = client.post("/v1/chat/completions", json=CHAT)
        started = time.monotonic()
        answer = read_response(slow)
        waited = time.monotonic() - started
    status, payload = status_and_json(answer)
    assert while_held.status_code == 429, answer
    assert (status, payload.get("error", {}).get("code")) == (408, "body_timeout"), answer
    assert waited < 3
    assert_still_serving(gateway)


def test_slowloris_connections_do_not_starve_other_clients_and_are_cut_at_the_header_deadline(
    serve: Any
) -> None:
    """Many clients sending their headers a line at a time: a normal client is still served at
    once, and each trickler gets a 408 ``header_timeout`` and a closed connection once its
    headers have taken longer than ``header_timeout_seconds`` (uvicorn alone has no such deadline).
    """
    gateway = serve(header_timeout_seconds=3.0)
    slow = []
    try:
        opened = time.monotonic()
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
            slow.append(sock)
        for round_number in range(2):
            for sock in slow:
                sock.sendall(b"x-drip-%d: 1\r\n" % round_number)
            started = time.monotonic()
            assert_still_serving(gateway)
            assert time.monotonic() - started < 1.0
        answers = [read_response(sock) for sock in slow]
        waited = time.monotonic() - opened
        closed = [sock.recv(1) for sock in slow]
    finally:
        for sock in slow:
            sock.close()
    assert {status_and_json(a)[0] for a in answers} == {408}
    assert {status_and_json(a)[1]["error"]["code"] for a in answers} == {"header_timeout"}
    assert closed == [b""] * len(slow)
    assert 3.0 <= waited < 8
    assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
    assert "header_timeout" in gateway.log


def test_the_header_deadline_also_holds_on_a_kept_alive_connection_and_for_a_silent_one(serve: Any) -> None:
    gateway = serve(header_timeout_seconds=1.0)
    get = b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n" + AUTH + b"\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as kept, \
            socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as silent:
        kept.sendall(get)
        first = read_response(kept)
        kept.sendall(get[:20])  # the next request starts, then stalls mid-headers
        started = time.monotonic()
        second = read_response(kept)
        waited = time.monotonic() - started
        quiet = read_response(silent)  # connected, never sent a byte
    assert first.startswith(b"HTTP/1.1 200")
    assert status_and_json(second)[0] == 408 and 0.9 <= waited < 3
    assert status_and_json(quiet)[0] == 408
    assert_still_serving(gateway)


def test_a_client_that_sends_its_headers_in_time_is_not_cut_while_its_answer_is_slow(serve: Any) -> None:
    """The header deadline ends with the headers: a request whose answer takes longer is served."""
    gateway = serve(header_timeout_seconds=0.5)
    body = json.dumps(CHAT).encode()
    request = post(b"/v1/chat/completions", body, extra=b"x-fake-first-byte-delay: 1.2\r\n")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request)
        got, payload = status_and_json(read_response(sock))
    assert got == 200, payload
