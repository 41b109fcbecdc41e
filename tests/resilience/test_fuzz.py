"""Fuzz the gateway's HTTP API from its own OpenAPI description (schemathesis + Hypothesis).

The schema is read from the served ``/openapi.json``. Every operation gets cases that
fit the schema (positive) and cases that break it (negative), with valid keys so that
bodies reach the gateway's parsing; the admin operations come last, since a fuzzed
kill stops serving. Generation is derandomized and bounded, so runs repeat exactly.

Checked on every answer: no server error from the gateway itself (503 only as the
kill switch's refusal), JSON that parses when it says JSON, no secret (API or admin
key, or their hashes) in a body or a header. The number of cases is printed and has
a floor, so a schema change that starves the fuzzer shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest

pytest.importorskip("schemathesis", reason="the `bench` extra (schemathesis, hypothesis) is not installed")

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode

from bench.procs import ADMIN_KEY, API_KEY

EXAMPLES_PER_OPERATION = 40
MINIMUM_CASES = 300
SECRETS = [API_KEY, ADMIN_KEY] + [hashlib.sha256(k.encode()).hexdigest() for k in (API_KEY, ADMIN_KEY)]


@pytest.fixture(scope="module")
def gateway(serve_shared: Any) -> Any:
    # As deployed: no test-engine headers forwarded. (Hypothesis draws header names from the
    # string constants of the test modules, the fake engine's controls among them.)
    return serve_shared(max_body_bytes=8192, first_byte_timeout_seconds=5.0, forward_headers=())


def bounded(document: dict[str, Any]) -> dict[str, Any]:
    """The published contract with this test's own bound on generated tokens: the fake
    engine streams one chunk per token, and the fuzzer's time goes to the gateway, not to
    long answers. The contract itself carries no limit narrowed for testing."""
    schemas = document["components"]["schemas"]
    for name in ("Completion", "ChatCompletion"):
        schemas[name]["properties"]["max_tokens"] = {"type": "integer", "minimum": 1, "maximum": 64}
    return document


def check(response: Any, path: str) -> None:
    """``response``: schemathesis' own, whose headers map a lowercase name to a list of values."""
    where = f"{response.request.method} {path} -> {response.status_code}"
    if response.status_code >= 500:
        assert response.status_code == 503, where
        if path != "/readyz":
            assert json.loads(response.content)["error"]["code"] == "kill_switch_engaged", where
    ctype = " ".join(response.headers.get("content-type", []))
    if ctype.startswith("application/json") and response.content:
        json.loads(response.content)
    exposed = response.content + repr(sorted(response.headers.items())).encode()
    sent = response.request.body or b""
    sent = sent if isinstance(sent, bytes) else sent.encode()
    for secret in SECRETS:
        # The fuzzer reuses strings it has seen, the keys among them: an echo of the body it
        # sent (a kill "reason") is not a leak.
        if secret.encode() not in sent:
            assert secret.encode() not in exposed, f"{where}: a secret leaked"


def test_the_api_described_by_openapi_survives_fuzzing_without_server_errors_or_leaks(gateway: Any) -> None:
    schema = schemathesis.openapi.from_dict(bounded(requests.get(f"{gateway.url}/openapi.json", timeout=10).json()))
    operations = sorted((result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)),
                        key=lambda op: (op.path.startswith("/admin"), op.path, op.method))
    session = requests.Session()
    ran: dict[str, int] = {}

    def fuzz(operation: Any, mode: GenerationMode, key: str, label: str) -> None:
        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            response = case.call(base_url=gateway.url, session=session, timeout=10,
                                 headers={"Authorization": f"Bearer {key}"})
            check(response, case.operation.path)
            ran[label] += 1

        with contextlib.suppress(Unsatisfiable):
            run()

    for operation in operations:
        key = ADMIN_KEY if operation.path.startswith("/admin") else API_KEY
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} {mode.value}"
            ran[label] = 0
            fuzz(operation, mode, key, label)
    total = sum(ran.values())
    print(f"\nschemathesis: {total} cases over {len(operations)} operations")
    for label, count in ran.items():
        print(f"  {count:4d}  {label}")
    assert total >= MINIMUM_CASES
    assert all(ran[f"{op.method.upper()} {op.path} positive"] > 0 for op in operations)
