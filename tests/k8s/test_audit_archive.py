"""The ConfigMap audit chain near the 1 MiB limit: archived, verifiable whole, never failing open.

Against a FAKE API server (tests/support/fake_apiserver.py) driven by the official
``kubernetes`` client. The fake refuses a ConfigMap whose data values exceed 1 MiB and a
data change to an immutable one, as the real API server's ``ValidateConfigMap`` and
``ValidateConfigMapUpdate`` do (kubernetes/kubernetes pkg/apis/core/validation/validation.go;
Kubernetes docs, "ConfigMaps": "The data stored in a ConfigMap cannot exceed 1 MiB").
What it does not prove: a real API server's RBAC for the archives' create and get.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.k8s.conftest import ADMIN_KEY, API_KEY
from tests.k8s.test_state_k8s import CLUSTER, _refused_after, gateways
from tests.support.fake_apiserver import MAX_CONFIGMAP_BYTES, FakeApiServer
from triptyque.errors import AuditError
from triptyque.gateway import chain, state_k8s
from triptyque.gateway.killswitch import KillSwitch
from triptyque.gateway.settings import AUDIT_ARCHIVES, audit_archive_name
from triptyque.gateway.state import KillState
from triptyque.gateway.state_k8s import (
    AUDIT_KEY,
    BASE_KEY,
    STATE_KEY,
    ConfigMapAuditLog,
    ConfigMapStateStore,
    audit_lines,
)
from triptyque.monitoring.metrics import sample_value

ARCHIVES = {audit_archive_name(CLUSTER.configmap, n) for n in range(1, AUDIT_ARCHIVES + 1)}


@pytest.fixture
def archives_readable(fake_api: FakeApiServer) -> FakeApiServer:
    """The gateways' Role as rendered (triptyque/k8s/gateway.py): the archives, by name."""
    fake_api.allowed_configmaps |= ARCHIVES
    return fake_api


def near_full_chain(fake_api: FakeApiServer, target_bytes: int) -> KillState:
    """A valid chain of kills and resumes in the live ConfigMap, ``target_bytes`` long, with its state."""
    lines: list[str] = []
    seq, head = 0, chain.GENESIS
    filler = "x" * 1800
    action = "resume"
    while sum(len(line) + 1 for line in lines) < target_bytes or action == "kill":
        action = "kill" if seq % 2 == 0 else "resume"
        entry, line = chain.next_entry([], "test", 1.0 + seq, {
            "action": action, "operator": "jane", "reason": filler, "source": "test", "changed": True,
        }, start=(seq, head) if seq else None)
        lines.append(line)
        seq, head = entry["seq"], entry["hash"]
    state = KillState(engaged=action == "kill", operator="jane", reason=filler, changed_at=1.0,
                      audit_head=head, audit_seq=seq)
    fake_api.create_configmap(CLUSTER.configmap, {
        AUDIT_KEY: "".join(f"{line}\n" for line in lines), STATE_KEY: state.model_dump_json()})
    return state


def test_the_fake_api_server_refuses_more_than_one_mib_of_data_like_the_real_one(fake_api, connection):
    core = client.CoreV1Api(client.ApiClient(connection))
    current = core.read_namespaced_config_map(CLUSTER.configmap, CLUSTER.namespace)
    current.data = {"a": "x" * (MAX_CONFIGMAP_BYTES - 1), "b": "yy"}
    with pytest.raises(ApiException) as refused:
        core.replace_namespaced_config_map(CLUSTER.configmap, CLUSTER.namespace, current)
    assert refused.value.status == 422
    assert "must have at most 1048576 bytes" in str(refused.value.body)


@pytest.mark.anyio
async def test_a_kill_into_an_audit_log_at_the_configmap_limit_is_recorded_after_archiving(
    archives_readable, connection
):
    fake_api = archives_readable
    state = near_full_chain(fake_api, 950 * 1024)  # today: "is full", the kill is never recorded
    switch = KillSwitch(ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection))
    switch.start(watch_interval=None)
    assert not switch.engaged
    killed, _ = await switch.engage("jane", "incident 7", "test")
    assert killed.engaged and killed.audit_seq == (state.audit_seq or 0) + 1
    live = fake_api.data(CLUSTER.configmap)
    archive = fake_api.configmaps[audit_archive_name(CLUSTER.configmap, 1)]
    assert archive["immutable"] is True
    # The live segment starts from the archived head: its first entry follows the archive's last.
    (first,) = (json.loads(line) for line in audit_lines(live))
    last_archived = json.loads(audit_lines(archive["data"])[-1])
    assert first["prev"] == last_archived["hash"] and first["seq"] == last_archived["seq"] + 1
    assert json.loads(live[BASE_KEY]) == {"archives": 1, "seq": last_archived["seq"],
                                          "head": last_archived["hash"], "signed": False}
    whole = ConfigMapAuditLog(CLUSTER, connection).verify(killed.audit_head)
    assert whole.entries == killed.audit_seq and whole.head == killed.audit_head
    assert ConfigMapStateStore(CLUSTER, connection).load() == killed


def test_the_chain_keeps_growing_across_many_archives_and_verifies_whole(
    archives_readable, connection, monkeypatch
):
    monkeypatch.setattr(state_k8s, "AUDIT_ROTATE_BYTES", 2048)
    audit = ConfigMapAuditLog(CLUSTER, connection, key=b"k" * 32)
    for number in range(40):
        entry = audit.append(action="kill" if number % 2 == 0 else "resume", operator="jane",
                             reason="r" * 200, source="test", changed=True)
    assert len(archives_readable.data(CLUSTER.configmap)[AUDIT_KEY]) <= 2048
    base = json.loads(archives_readable.data(CLUSTER.configmap)[BASE_KEY])
    assert base["archives"] >= 5 and base["signed"] is True
    verified = audit.verify(entry["hash"])
    assert (verified.entries, verified.seq, verified.head) == (40, 40, entry["hash"])
    # Each archive is checked, not only the live segment: a missing one is named.
    archives_readable.delete_configmap(audit_archive_name(CLUSTER.configmap, 2))
    with pytest.raises(AuditError, match=r"triptyque-llm-killswitch-audit-002 is missing"):
        audit.verify(entry["hash"])
    assert audit.check().seq == 40  # the gateways' own check reads the live segment only


def test_an_archive_is_immutable_once_written(archives_readable, connection, monkeypatch):
    monkeypatch.setattr(state_k8s, "AUDIT_ROTATE_BYTES", 1024)
    audit = ConfigMapAuditLog(CLUSTER, connection)
    for _ in range(8):
        audit.append(action="kill", operator="jane", reason="r" * 200, source="test", changed=True)
    core = client.CoreV1Api(client.ApiClient(connection))
    name = audit_archive_name(CLUSTER.configmap, 1)
    archive = core.read_namespaced_config_map(name, CLUSTER.namespace)
    archive.data = {AUDIT_KEY: ""}
    with pytest.raises(ApiException) as refused:
        core.replace_namespaced_config_map(name, CLUSTER.namespace, archive)
    assert refused.value.status == 422 and "immutable" in str(refused.value.body)


@pytest.mark.anyio
async def test_a_kill_that_cannot_be_recorded_stops_every_replica_and_is_counted(
    archives_readable, connection
):
    fake_api = archives_readable
    near_full_chain(fake_api, 950 * 1024)
    fake_api.refuse_create = True  # the archive cannot be written: the log stays full
    async with gateways(connection, 2) as urls, httpx.AsyncClient(timeout=5) as http:
        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}
        serving = {"Authorization": f"Bearer {API_KEY}"}
        assert (await http.post(f"{urls[1]}/v1/chat/completions", json=body, headers=serving)).status_code == 200
        answer = await http.post(f"{urls[0]}/admin/kill", json={"operator": "jane", "reason": "drill"},
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert answer.status_code >= 500
        metrics = (await http.get(f"{urls[0]}/metrics")).text
        assert sample_value(metrics, "triptyque_gateway_audit_write_failures_total") == 1

        # The other replica reads the fail-closed state the chain does not back and stops too.
        started = time.perf_counter()
        delays = [await _refused_after(http, url, started) for url in urls]
        assert max(delays) < 3.0, delays
    stored: Any = ConfigMapStateStore(CLUSTER, connection).load()
    assert stored.engaged and stored.reason.startswith("fail-closed: the kill was not persisted")


def test_the_gateways_role_names_every_archive_they_may_read(rendered):
    role = next(o for o in rendered["cloud"]
                if o["kind"] == "Role" and o["metadata"]["name"] == "triptyque-llm-gateway")
    readable = {name for rule in role["rules"] if "get" in rule["verbs"] for name in rule.get("resourceNames", [])}
    assert readable >= ARCHIVES | {"triptyque-llm-killswitch"}
    creating = [rule for rule in role["rules"] if "create" in rule["verbs"]]
    assert creating == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]


@pytest.mark.anyio
async def test_triptyque_audit_verify_follows_the_chain_through_its_archives(
    archives_readable, connection, monkeypatch, spec_file, tmp_path
):
    from typer.testing import CliRunner

    from tests.k8s.test_state_k8s import _kubeconfig
    from triptyque.cli import app

    monkeypatch.setattr(state_k8s, "AUDIT_ROTATE_BYTES", 1024)
    switch = KillSwitch(ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection))
    switch.start(watch_interval=None)
    for number in range(6):
        await switch.engage("jane", f"incident {number} " + "r" * 200, "test")
        await switch.release("jane", "fixed", "test")
    assert json.loads(archives_readable.data(CLUSTER.configmap)[BASE_KEY])["archives"] >= 2
    (tmp_path / "cloud").mkdir()
    _kubeconfig(tmp_path / "cloud" / "kubeconfig", archives_readable.url)
    argv = ["audit", "verify", "--target", "cloud", "--spec", str(spec_file), "--state-dir", str(tmp_path)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "12 entries, archives included, chain intact, state agrees" in result.output
    archives_readable.delete_configmap(audit_archive_name(CLUSTER.configmap, 1))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert "triptyque-llm-killswitch-audit-001 is missing" in result.output
