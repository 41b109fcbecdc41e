"""The cluster kill-switch backend, against a FAKE API server (tests/k8s/fake_apiserver.py).

What this proves: the client side of the protocol (resourceVersion preconditions, the
name-scoped list and watch, 409/410/403/404 handling), that replicas sharing the
ConfigMap keep one audit chain and stop together, and that `triptyque kill` reaches
every gateway. What it does not: a real API server's RBAC, admission and latency.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
import yaml

from tests.k8s.conftest import ADMIN_KEY, API_KEY
from tests.support import ROOT as REPO
from tests.support.fake_apiserver import TOKEN, FakeApiServer
from triptyque.errors import AuditError, StateError
from triptyque.gateway import kube
from triptyque.gateway.app import create_app
from triptyque.gateway.settings import ClusterState, GatewaySettings
from triptyque.gateway.state import KillState, Loaded, Observed, Unreadable
from triptyque.gateway.state_k8s import (
    AUDIT_KEY,
    STATE_KEY,
    ConfigMapAuditLog,
    ConfigMapStateStore,
)
from triptyque.keys import hash_key
from triptyque.spec import KillSwitch, Limits, load_spec
from triptyque.targets.kubernetes import KubernetesTarget

CLUSTER = ClusterState(namespace="triptyque", configmap="triptyque-llm-killswitch")


def record(store: ConfigMapStateStore, audit: ConfigMapAuditLog, action: str, who: str) -> KillState:
    entry = audit.append(action=action, operator=who, reason="test", source="test", changed=True)
    state = KillState(engaged=action == "kill", operator=who, reason="test",
                      changed_at=entry["ts"], audit_head=entry["hash"])
    store.save(state)
    return state


def test_a_fresh_configmap_holds_no_state_and_no_audit_entry(connection):
    assert ConfigMapStateStore(CLUSTER, connection).load() is None
    assert ConfigMapAuditLog(CLUSTER, connection).head() is None


def test_state_and_audit_round_trip_through_the_configmap(fake_api, connection):
    store, audit = ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection)
    killed = record(store, audit, "kill", "jane")
    assert store.load() == killed
    assert audit.head() == killed.audit_head
    data = fake_api.data(CLUSTER.configmap)
    assert set(data) == {STATE_KEY, AUDIT_KEY}
    assert audit.verify(killed.audit_head).entries == 1


def test_concurrent_writers_keep_one_linear_audit_chain(fake_api, connection):
    fake_api.conflicts_to_inject = 3
    errors: list[BaseException] = []

    def writer(who: str) -> None:
        audit = ConfigMapAuditLog(CLUSTER, connection)  # one per replica, like separate pods
        try:
            for _ in range(5):
                audit.append(action="kill", operator=who, reason="race", source="test", changed=True)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"replica-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    verified = ConfigMapAuditLog(CLUSTER, connection).verify()
    assert verified.entries == 15
    assert fake_api.conflicts_to_inject == 0


def test_an_older_decision_never_overwrites_a_newer_one(fake_api, connection):
    store_a, audit_a = ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection)
    entry_a = audit_a.append(action="kill", operator="a", reason="r", source="t", changed=True)
    newer = record(ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection),
                   "resume", "b")
    store_a.save(KillState(engaged=True, operator="a", reason="r", audit_head=entry_a["hash"]))
    assert store_a.load() == newer


def test_a_tampered_chain_is_named_by_verify(fake_api, connection):
    store, audit = ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection)
    record(store, audit, "kill", "jane")
    last = record(store, audit, "resume", "jane")
    data = fake_api.data(CLUSTER.configmap)
    fake_api.create_configmap(CLUSTER.configmap, {**data, AUDIT_KEY: data[AUDIT_KEY].replace("jane", "john", 1)})
    with pytest.raises(AuditError, match="entry 1: entry seq=1 was modified"):
        audit.verify(last.audit_head)


def test_missing_forbidden_and_unauthenticated_access_fail_with_a_clear_reason(fake_api, connection):
    missing = ClusterState(namespace="triptyque", configmap="absent")
    fake_api.allowed_configmaps.add("absent")
    with pytest.raises(StateError, match="does not exist; it is created with the deployment"):
        ConfigMapStateStore(missing, connection).load()
    other = ClusterState(namespace="triptyque", configmap="someone-elses")
    with pytest.raises(StateError, match=r"refused \(HTTP 403.*check the Role"):
        ConfigMapStateStore(other, connection).load()
    stranger = kube.for_server(fake_api.url, "wrong")
    with pytest.raises(AuditError, match="HTTP 401"):
        ConfigMapAuditLog(CLUSTER, stranger).head()


def test_outside_a_pod_the_default_connection_fails_closed(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(StateError, match="not running in a Kubernetes pod"):
        ConfigMapStateStore(CLUSTER).load()


def test_in_a_pod_the_client_s_in_cluster_loader_is_used_with_its_token_refresh(tmp_path, monkeypatch):
    """The service-account token rotates; the official client's loader re-reads it (its
    refresh hook), which the hand-written client used to do itself."""
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first")  # the kubelet writes it without a newline
    ca.write_text("not checked until a request is made\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    configuration = kube.in_cluster()
    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.get_api_key_with_prefix("BearerToken", alias="authorization").lower() == "bearer first"
    assert configuration.refresh_api_key_hook is not None


def test_a_corrupt_state_is_refused_on_load(fake_api, connection):
    fake_api.create_configmap(CLUSTER.configmap, {STATE_KEY: "{not json"})
    with pytest.raises(StateError, match="is corrupt"):
        ConfigMapStateStore(CLUSTER, connection).load()


async def _next(watch: AsyncIterator[Observed], within: float = 2.0) -> Observed:
    return await asyncio.wait_for(watch.__anext__(), timeout=within)


@pytest.mark.anyio
async def test_a_watching_replica_sees_another_replica_s_kill_at_once(fake_api, connection):
    follower = ConfigMapStateStore(CLUSTER, connection)
    follower.load()
    watch = follower.watch(0.05)
    writer = (ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection))
    pending = asyncio.ensure_future(_next(watch))
    await asyncio.sleep(0.2)  # the watch is established
    started = time.perf_counter()
    killed = await anyio.to_thread.run_sync(record, *writer, "kill", "jane")
    assert await pending == Loaded(killed)
    assert time.perf_counter() - started < 1.0
    # an audit-only write changes the object but not the state: nothing is yielded for it
    await anyio.to_thread.run_sync(lambda: writer[1].append(action="note", operator="x", reason="y",
                                                            source="t", changed=False))
    released = await anyio.to_thread.run_sync(record, *writer, "resume", "jane")
    assert await _next(watch) == Loaded(released)
    await watch.aclose()


@pytest.mark.anyio
async def test_the_watch_survives_expiry_closed_streams_and_fails_closed_on_deletion(fake_api, connection):
    follower = ConfigMapStateStore(CLUSTER, connection)
    follower.load()
    fake_api.gone_to_inject = 1
    watch = follower.watch(0.05)
    writer = (ConfigMapStateStore(CLUSTER, connection), ConfigMapAuditLog(CLUSTER, connection))
    pending = asyncio.ensure_future(_next(watch, within=5))
    await asyncio.sleep(0.3)  # 410 Gone, then a fresh list and watch
    killed = await anyio.to_thread.run_sync(record, *writer, "kill", "jane")
    assert await pending == Loaded(killed)
    fake_api.end_watches()
    await asyncio.sleep(0.3)
    released = await anyio.to_thread.run_sync(record, *writer, "resume", "jane")
    assert await _next(watch) == Loaded(released)
    fake_api.delete_configmap(CLUSTER.configmap)
    gone = await _next(watch)
    assert isinstance(gone, Unreadable) and "was deleted" in gone.reason
    await watch.aclose()


# ---- real gateways sharing the fake cluster ----------------------------------------------


def _engine(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/health":
        return httpx.Response(200)
    return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}})


def _gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        port=8080, upstream_url="http://engine.test", served_model="tiny-llama",
        api_keys={"app": hash_key(API_KEY)}, admin_keys={"ops": hash_key(ADMIN_KEY)},
        limits=Limits(max_body_bytes=4096, max_concurrent_requests=4, connect_timeout_seconds=1.0,
                      first_byte_timeout_seconds=2.0, idle_timeout_seconds=2.0),
        kill_switch=KillSwitch(), state_backend="kubernetes", cluster=CLUSTER, target="onprem",
    )


@asynccontextmanager
async def gateways(connection: Any, count: int) -> AsyncIterator[list[str]]:
    """``count`` gateway replicas, each a real HTTP server with its own store and watch."""
    servers, tasks, urls = [], [], []
    for _ in range(count):
        app = create_app(
            _gateway_settings(), transport=httpx.MockTransport(_engine), watch_interval=0.05,
            store=ConfigMapStateStore(CLUSTER, connection), audit=ConfigMapAuditLog(CLUSTER, connection),
        )
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error",
                                               timeout_graceful_shutdown=1))
        tasks.append(asyncio.create_task(server.serve()))
        servers.append(server)
    for server in servers:
        while not server.started:
            await asyncio.sleep(0.01)
        urls.append(f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}")
    await asyncio.sleep(0.2)  # every watch is established
    try:
        yield urls
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)


async def _refused_after(client: httpx.AsyncClient, url: str, started: float) -> float:
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    while time.perf_counter() - started < 3.0:
        response = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        if response.status_code == 503:
            return time.perf_counter() - started
        await asyncio.sleep(0.01)
    return float("inf")


@pytest.mark.anyio
async def test_a_kill_on_one_gateway_stops_every_replica_within_a_second(fake_api, connection):
    async with gateways(connection, 3) as urls, httpx.AsyncClient(timeout=5) as client:
        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {API_KEY}"}
        for url in urls:
            assert (await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)).status_code == 200
        started = time.perf_counter()
        response = await client.post(f"{urls[0]}/admin/kill", json={"operator": "jane", "reason": "drill"},
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code == 200
        delays = await asyncio.gather(*(_refused_after(client, url, started) for url in urls))
        assert max(delays) < 1.0, delays
        stored = ConfigMapStateStore(CLUSTER, connection).load()
        # The operator recorded is the admin key's name, not the body's free text.
        assert stored is not None and stored.engaged and stored.operator == "ops"


def _exec_through(fake_api: FakeApiServer, calls: list[tuple[str, list[str]]] | None = None) -> Any:
    """What the kubelet's exec does with Cluster's command: run it "in the pod", where the
    gateway's 127.0.0.1 is the fake pod's real gateway; the script itself runs for real."""
    def run(pod: str, command: list[str]) -> str:
        if calls is not None:
            calls.append((pod, command))
        assert command[:2] == ["python", "-c"]
        url = re.sub(r"^http://127\.0\.0\.1:\d+", fake_api.pods[pod], command[3])
        done = subprocess.run([sys.executable, "-c", command[2], url], capture_output=True,
                              text=True, timeout=10, check=True)
        return done.stdout
    return run


def _exec_in_process(fake_api: FakeApiServer) -> Any:
    """Like _exec_through, printing what READYZ_SCRIPT prints, without starting a Python per
    call (the timing of a kill is measured here, not the script)."""
    def run(pod: str, command: list[str]) -> str:
        url = re.sub(r"^http://127\.0\.0\.1:\d+", fake_api.pods[pod], command[3])
        response = httpx.get(url, timeout=3)
        return f"{response.status_code}\n{response.text}\n"
    return run


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "ops", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ops"}}],
    }))
    return path


@pytest.mark.anyio
async def test_triptyque_kill_hard_stops_every_gateway_and_frees_the_gpu_then_resume_undoes_it(
    fake_api: FakeApiServer, connection: Any, spec_file: Path, tmp_path: Path
):
    fake_api.scales["triptyque-llm-engine"] = 1
    kubeconfig = kube.from_kubeconfig("fake", str(_kubeconfig(tmp_path / "kubeconfig", fake_api.url)))
    target = KubernetesTarget("onprem", load_spec(spec_file, "onprem"), state_root=tmp_path, root=REPO,
                              configuration=kubeconfig)
    async with gateways(connection, 3) as urls:
        fake_api.pods.update({f"triptyque-llm-gateway-{i}": url for i, url in enumerate(urls)})
        target.cluster().exec_in_pod = _exec_in_process(fake_api)
        reports = await anyio.to_thread.run_sync(lambda: target.kill("jane", "incident 42", hard=True))
        gateways_seen, engine = reports[:3], reports[3]
        assert all(r.reachable and r.engaged for r in gateways_seen), reports
        assert max(r.seconds for r in gateways_seen) < 1.0
        assert fake_api.scales["triptyque-llm-engine"] == 0 and "1 -> 0" in engine.detail
        assert engine.engaged is True  # the CLI exits 0 only when every report says stopped
        status = await anyio.to_thread.run_sync(target.status)
        assert [r.engaged for r in status] == [True, True, True]
        reports = await anyio.to_thread.run_sync(lambda: target.resume("jane", "fixed"))
        assert [r.engaged for r in reports] == [False, False, False, False]
        assert fake_api.scales["triptyque-llm-engine"] == 1
    verified = ConfigMapAuditLog(CLUSTER, connection).verify()
    assert verified.entries == 2


@pytest.mark.anyio
async def test_kill_is_confirmed_by_each_gateway_in_its_pod_not_through_the_api_server_s_pod_proxy(
    fake_api: FakeApiServer, connection: Any, spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The namespace's default-deny NetworkPolicy drops the API server's pods/proxy connections
    (they come from a control-plane address); an exec runs inside the pod, where it does not
    apply (https://kubernetes.io/docs/concepts/services-networking/network-policies/: policies
    select pod traffic; kubelet exec enters the container, it is not pod-network traffic)."""
    from kubernetes.client import CoreV1Api

    def blocked(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("pods/proxy is dropped by the NetworkPolicy on a real cluster")

    monkeypatch.setattr(CoreV1Api, "connect_get_namespaced_pod_proxy_with_path", blocked)
    kubeconfig = kube.from_kubeconfig("fake", str(_kubeconfig(tmp_path / "kubeconfig", fake_api.url)))
    target = KubernetesTarget("onprem", load_spec(spec_file, "onprem"), state_root=tmp_path, root=REPO,
                              configuration=kubeconfig)
    calls: list[tuple[str, list[str]]] = []
    async with gateways(connection, 2) as urls:
        fake_api.pods.update({f"triptyque-llm-gateway-{i}": url for i, url in enumerate(urls)})
        target.cluster().exec_in_pod = _exec_through(fake_api, calls)
        reports = await anyio.to_thread.run_sync(lambda: target.kill("jane", "drill"))
        assert [(r.reachable, r.engaged) for r in reports] == [(True, True), (True, True)]
        assert all(r.detail for r in reports)  # the gateway's own reason
        status = await anyio.to_thread.run_sync(target.status)
        assert [r.engaged for r in status] == [True, True]
    assert {pod for pod, _ in calls} == {"triptyque-llm-gateway-0", "triptyque-llm-gateway-1"}
    assert all(command[3] == "http://127.0.0.1:8080/readyz" for _, command in calls)


def test_a_gateway_that_cannot_be_reached_is_reported_unreachable_with_why(spec_file: Path, tmp_path: Path):
    from kubernetes.client import V1ObjectMeta, V1Pod, V1PodCondition, V1PodSpec, V1PodStatus

    from triptyque.targets.cluster import Cluster

    cluster = Cluster(kube.for_server("http://127.0.0.1:9", TOKEN), "triptyque", "onprem")

    def refused(_pod: str, _command: list[str]) -> str:
        raise RuntimeError("pods/exec is forbidden")

    cluster.exec_in_pod = refused
    pod = V1Pod(metadata=V1ObjectMeta(name="gw-0"), spec=V1PodSpec(containers=[], node_name="n1"),
                status=V1PodStatus(conditions=[V1PodCondition(type="Ready", status="True")]))
    report = cluster._probe(pod, 8080, time.perf_counter())
    assert report.reachable is False and "pods/exec is forbidden" in report.detail
    assert report.extra == {"node": "n1", "pod_ready": True}


@pytest.mark.anyio
async def test_resume_after_a_hard_kill_restores_the_stack_s_engine_replicas(
    fake_api: FakeApiServer, connection: Any, spec_file: Path, tmp_path: Path
):
    fake_api.scales["triptyque-llm-engine"] = 2
    kubeconfig = kube.from_kubeconfig("fake", str(_kubeconfig(tmp_path / "kubeconfig", fake_api.url)))
    target = KubernetesTarget("onprem", load_spec(spec_file, "onprem"), state_root=tmp_path, root=REPO,
                              configuration=kubeconfig)
    target.config = target.config.model_copy(update={"engine": target.config.engine.model_copy(
        update={"replicas": 2})})
    async with gateways(connection, 1) as urls:
        fake_api.pods["triptyque-llm-gateway-0"] = urls[0]
        target.cluster().exec_in_pod = _exec_in_process(fake_api)
        *_, engine = await anyio.to_thread.run_sync(lambda: target.kill("jane", "incident 43", hard=True))
        assert fake_api.scales["triptyque-llm-engine"] == 0 and engine.detail == "engine replicas 2 -> 0"
        *_, engine = await anyio.to_thread.run_sync(lambda: target.resume("jane", "fixed"))
        assert fake_api.scales["triptyque-llm-engine"] == 2 and engine.detail == "engine replicas 0 -> 2"
