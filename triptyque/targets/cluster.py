"""The cluster side of the Kubernetes targets, through the official ``kubernetes`` client:
the kill switch's ConfigMap, the gateway pods' own view of it, the engine's replicas.

``decide`` writes a kill or resume to the kill-switch ConfigMap with the code the
gateways run (``gateway.state_k8s``), so the audit chain stays one; every gateway sees
it through its watch. ``gateway_reports`` reads each gateway pod's ``/readyz`` through
the API server's pod proxy.
"""

from __future__ import annotations

import time
from typing import Any

from triptyque.errors import TargetError
from triptyque.gateway import kube
from triptyque.gateway.killswitch import KillSwitch, PersistError
from triptyque.gateway.settings import ClusterState
from triptyque.gateway.state_k8s import ConfigMapAuditLog, ConfigMapStateStore
from triptyque.types import AdminAction, NodeReport

CONFIRM_SECONDS = 3.0
REQUEST_TIMEOUT = 5.0


class Cluster:
    """One namespace of one cluster, reached with a client ``Configuration``."""

    def __init__(self, configuration: Any, namespace: str, where: str) -> None:
        from kubernetes import client

        self.configuration, self.namespace, self.where = configuration, namespace, where
        api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def _fail(self, doing: str, exc: Exception) -> TargetError:
        from kubernetes.client.exceptions import ApiException

        if isinstance(exc, ApiException):
            return TargetError(f"{doing} on {self.where}: HTTP {exc.status}: {kube.api_message(exc)}")
        return TargetError(f"the API server of {self.where} did not answer ({doing}): {type(exc).__name__}: {exc}")

    async def decide(self, configmap: str, action: AdminAction, operator: str, reason: str) -> None:
        state = ClusterState(namespace=self.namespace, configmap=configmap)
        switch = KillSwitch(ConfigMapStateStore(state, self.configuration),
                            ConfigMapAuditLog(state, self.configuration))
        switch.start(watch_interval=None)
        source = f"triptyque {action} --target {self.where}"
        try:
            if action == "kill":
                await switch.engage(operator, reason, source)
            else:
                await switch.release(operator, reason, source)
        except PersistError as exc:
            raise TargetError(f"{action} was not recorded in the cluster: {exc}") from None

    def gateway_pods(self, selector: dict[str, str]) -> list[Any]:
        labels = ",".join(f"{k}={v}" for k, v in selector.items())
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=labels,
                                                 _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # ApiException, urllib3's connection errors
            raise self._fail("listing the gateway pods", exc) from None
        return list(pods.items or [])

    def _probe(self, pod: Any, port: int, started: float) -> NodeReport:
        import json

        name = pod.metadata.name
        path = f"/api/v1/namespaces/{self.namespace}/pods/{name}:{port}/proxy/readyz"
        node = (pod.spec.node_name if pod.spec else None) or ""
        try:
            response: Any = self.core.connect_get_namespaced_pod_proxy_with_path(
                f"{name}:{port}", self.namespace, "readyz", _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT)
            status, body = response.status, json.loads(response.data or b"{}")
        except Exception as exc:
            from kubernetes.client.exceptions import ApiException

            if isinstance(exc, ApiException) and exc.status == 503 and exc.body:
                status, body = 503, json.loads(exc.body)
            else:
                return NodeReport(name, path, reachable=False, seconds=time.perf_counter() - started,
                                  detail=f"unreachable: {type(exc).__name__}", extra={"node": node})
        return NodeReport(
            name, path, reachable=True, engaged=bool(body.get("kill_switch_engaged")),
            ready=status == 200, seconds=time.perf_counter() - started,
            detail=str(body.get("reason", "")), extra={"node": node},
        )

    def gateway_reports(self, selector: dict[str, str], port: int, engaged: bool | None,
                        started: float) -> list[NodeReport]:
        """Each gateway's own answer; with ``engaged``, wait until each says so (or time out)."""
        pods = self.gateway_pods(selector)
        if not pods:
            raise TargetError(f"no gateway pod in namespace {self.namespace}: is {self.where} up?")
        reports: dict[str, NodeReport] = {}
        while True:
            for pod in pods:
                name = pod.metadata.name
                if name not in reports or reports[name].engaged != engaged:
                    reports[name] = self._probe(pod, port, started)
            settled = engaged is None or all(r.engaged == engaged for r in reports.values())
            if settled or time.perf_counter() - started > CONFIRM_SECONDS:
                return [reports[p.metadata.name] for p in pods]
            time.sleep(0.05)

    def scale(self, deployment: str, replicas: int) -> NodeReport:
        started = time.perf_counter()
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{deployment}/scale"
        try:
            scale = self.apps.read_namespaced_deployment_scale(deployment, self.namespace,
                                                               _request_timeout=REQUEST_TIMEOUT)
            current = int((scale.spec.replicas if scale.spec else 0) or 0)
            if current != replicas:
                self.apps.patch_namespaced_deployment_scale(
                    deployment, self.namespace, {"spec": {"replicas": replicas}},
                    _content_type="application/merge-patch+json", _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:
            raise self._fail(f"scaling {deployment}", exc) from None
        # "stopped" for the engine means no replica holds a GPU.
        return NodeReport(deployment, path, reachable=True, engaged=replicas == 0,
                          seconds=time.perf_counter() - started,
                          detail=f"engine replicas {current} -> {replicas}", extra={"replicas": replicas})
