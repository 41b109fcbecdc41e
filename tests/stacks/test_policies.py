"""Each CrossGuard policy on a compliant and a violating resource, then the pack over gRPC.

The first tests call each policy's own ``validate`` with ``ResourceValidationArgs``, as
the pack does. The last one starts ``stacks/policies/__main__.py`` the way the Pulumi
engine does (a process that prints its port), and analyses resources over the
Analyzer gRPC interface.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
)

from stacks.policies.rules import RULES, policies
from tests.support import ROOT as REPO

DIGEST = "@sha256:" + "a" * 64
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def deployment(**container: Any) -> dict[str, Any]:
    base = {
        "name": "vllm", "image": "vllm/vllm-openai:v0.32.0" + DIGEST,
        "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                      "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
    }
    return {"spec": {"template": {"spec": {
        "securityContext": {"runAsNonRoot": True}, "containers": [{**base, **container}],
    }}}}


def load_balancer(*ranges: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "LoadBalancer", "ports": [{"port": 8080}]}
    if ranges:
        spec["loadBalancerSourceRanges"] = list(ranges)
    return {"metadata": {"name": "gw"}, "spec": spec}


def settings(**changes: Any) -> dict[str, Any]:
    body = {"api_keys": {"app": "a" * 64}, "admin_keys": {"ops": "b" * 64},
            "kill_switch": {"enabled": True}, "state_backend": "kubernetes",
            "cluster": {"namespace": "triptyque", "configmap": "x"}, **changes}
    return {"metadata": {"name": "settings"}, "data": {"settings.json": json.dumps(body)}}


def firewall(default: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"zone": "fr-par-2", "inboundDefaultPolicy": default, "inboundRules": list(rules)}


NONE: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
PARIS = {"region": "fr-par", "zone": "fr-par-2"}

# (policy, resource type, compliant props, violating props, expected words,
#  provider props for the compliant and the violating resource)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], str, tuple[dict[str, Any], dict[str, Any]]]] = [
    ("images-pinned-by-digest", DEPLOYMENT, deployment(),
     deployment(image="vllm/vllm-openai:latest"), "not pinned by digest", NONE),
    ("gpu-requests-equal-limits", DEPLOYMENT, deployment(),
     deployment(resources={"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"},
                           "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2"}}),
     "requests 1 nvidia.com/gpu but is limited to 2", NONE),
    ("containers-have-limits", DEPLOYMENT, deployment(),
     deployment(resources={"requests": {"cpu": "1"}}), "has no cpu or memory limit", NONE),
    ("containers-run-as-non-root", DEPLOYMENT, deployment(),
     deployment(securityContext={"runAsNonRoot": True, "runAsUser": 0}), "runAsUser: 0", NONE),
    ("no-public-exposure-without-allowlist", "kubernetes:core/v1:Service",
     load_balancer("203.0.113.0/24"), load_balancer(), "no loadBalancerSourceRanges", NONE),
    ("no-public-exposure-without-allowlist", "scaleway:instance/securityGroup:SecurityGroup",
     firewall("drop", {"action": "accept", "port": 22, "ipRange": "203.0.113.10/32"}),
     firewall("drop", {"action": "accept", "port": 22, "ipRange": "0.0.0.0/0"}), "from anywhere", NONE),
    ("gateway-auth-and-kill-switch", "kubernetes:core/v1:ConfigMap", settings(),
     settings(kill_switch={"enabled": False}), "kill switch is disabled", NONE),
    ("gateway-auth-and-kill-switch", "kubernetes:core/v1:ConfigMap", settings(),
     settings(api_keys={}), "no API key", NONE),
    ("cloud-resources-in-eu", "scaleway:kubernetes/cluster:Cluster", {"region": "fr-par"},
     {"region": "us-east-1"}, "outside the EU", NONE),
    ("cloud-resources-in-eu", "scaleway:iam/sshKey:SshKey", {"name": "ops"},
     {"name": "ops"}, "no region or zone is pinned", (PARIS, {})),
]


def _args(resource_type: str, props: dict[str, Any], provider: dict[str, Any]) -> ResourceValidationArgs:
    urn = f"urn:pulumi:test::triptyque::{resource_type}::subject"
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    provider_resource = PolicyProviderResource("pulumi:providers:scaleway", provider, "urn:p", "p")
    return ResourceValidationArgs(resource_type, props, urn, "subject", options, provider_resource)


def _violations(name: str, resource_type: str, props: dict[str, Any], provider: dict[str, Any]) -> list[str]:
    policy = next(p for p in policies() if p.name == name)
    found: list[str] = []
    validate = policy.validate  # type: ignore[attr-defined]
    validate(_args(resource_type, props, provider), lambda message, urn=None: found.append(message))
    return found


@pytest.mark.parametrize(("name", "resource_type", "good", "bad", "words", "providers"), CASES,
                         ids=[f"{c[0]}:{c[1].rsplit(':', 1)[-1]}:{i}" for i, c in enumerate(CASES)])
def test_each_policy_passes_a_compliant_resource_and_names_what_is_wrong_with_a_violating_one(
    name, resource_type, good, bad, words, providers
):
    assert _violations(name, resource_type, good, providers[0]) == []
    found = _violations(name, resource_type, bad, providers[1])
    assert found and any(words in message for message in found), found


def test_every_policy_of_the_pack_has_a_compliant_and_a_violating_case():
    assert {case[0] for case in CASES} == {rule.name for rule in RULES}


def test_numbers_the_engine_sends_as_floats_still_compare_as_quantities():
    floats = deployment(resources={"requests": {"cpu": 4.0, "memory": "16Gi", "nvidia.com/gpu": 1.0},
                                   "limits": {"cpu": 4.0, "memory": "16Gi", "nvidia.com/gpu": "1"}})
    assert _violations("gpu-requests-equal-limits", DEPLOYMENT, floats, {}) == []


@pytest.fixture
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack as the engine starts it: its own process, which prints the port it serves."""
    process = subprocess.Popen(
        [sys.executable, "-u", "__main__.py"], cwd=REPO / "stacks" / "policies",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip())
        print(f"policy pack analyzer listening on 127.0.0.1:{port}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resource_type: str, props: dict[str, Any]) -> Any:
    properties = struct_pb2.Struct()
    properties.update(props)
    urn = f"urn:pulumi:onprem::triptyque::{resource_type}::engine"
    return stub.Analyze(analyzer_pb2.AnalyzeRequest(type=resource_type, properties=properties, urn=urn,
                                                    name="engine"), timeout=10)


def test_the_pack_started_as_the_engine_does_analyses_resources_over_grpc(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
    assert info.name == "triptyque"
    assert [p.name for p in info.policies] == [rule.name for rule in RULES]
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}

    assert list(_analyze(analyzer, DEPLOYMENT, deployment()).diagnostics) == []
    bad = copy.deepcopy(deployment(image="vllm/vllm-openai:latest"))
    diagnostics = _analyze(analyzer, DEPLOYMENT, bad).diagnostics
    assert [d.policyName for d in diagnostics] == ["images-pinned-by-digest"]
    assert "not pinned by digest" in diagnostics[0].message
    assert diagnostics[0].enforcementLevel == analyzer_pb2.MANDATORY
