"""The cluster side of the Kubernetes targets, through the official ``kubernetes`` client:
the kill switch's ConfigMap, the gateway pods' own view of it, the engine's replicas.

``decide`` writes a kill or resume to the kill-switch ConfigMap with the code the
gateways run (``gateway.state_k8s``), so the audit chain stays one; every gateway sees
it through its watch. ``gateway_reports`` asks each gateway pod for its own ``/readyz``
on its loopback, through an exec in its container: the kubelet runs it inside the pod,
so the namespace's default-deny NetworkPolicy, which drops the API server's pods/proxy
connections (they come from a control-plane address), does not stand in the way. The
pod's Ready condition (the kubelet's own probe) is reported beside it.

The operator needs ``pods/exec`` (create) in the namespace, besides the ConfigMap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from triptyque.errors import TargetError
from triptyque.gateway import kube
from triptyque.gateway.killswitch import KillSwitch, PersistError
from triptyque.gateway.settings import ClusterState
from triptyque.gateway.state_k8s import ConfigMapAuditLog, ConfigMapStateStore
from triptyque.types import AdminAction, NodeReport

CONFIRM_SECONDS = 3.0
REQUEST_TIMEOUT = 5.0
GATEWAY_CONTAINER = "gateway"
# Run by the gateway image's own Python, inside the pod: the status line, then the body.
READYZ_SCRIPT = (
    "import sys, urllib.error, urllib.request\n"
    "try:\n"
    "    answer = urllib.request.urlopen(sys.argv[1], timeout=3)\n"
    "except urllib.error.HTTPError as error:\n"
    "    answer = error\n"
    "print(answer.status if hasattr(answer, 'status') else answer.code)\n"
    "print(answer.read().decode())\n"
)
# (pod name, command) -> what the command printed; Cluster.pod_exec by default.
PodExec = Callable[[str, list[str]], str]


def readyz_command(port: int) -> list[str]:
    return ["python", "-c", READYZ_SCRIPT, f"http://127.0.0.1:{port}/readyz"]


def parse_readyz(output: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) from what READYZ_SCRIPT printed."""
    status, _, body = output.strip().partition("\n")
    parsed = json.loads(body or "{}")
    return int(status), parsed if isinstance(parsed, dict) else {}


def pod_ready(pod: Any) -> bool | None:
    """The pod's Ready condition as the kubelet last set it (None: not reported yet)."""
    for condition in (pod.status.conditions if pod.status else None) or []:
        if condition.type == "Ready":
            return bool(condition.status == "True")
    return None


class Cluster:
    """One namespace of one cluster, reached with a client ``Configuration``."""

    def __init__(self, configuration: Any, namespace: str, where: str) -> None:
        from kubernetes import client

        self.configuration, self.namespace, self.where = configuration, namespace, where
        api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.exec_in_pod: PodExec = self.pod_exec

    def pod_exec(self, pod: str, command: list[str]) -> str:
        """Run ``command`` in the gateway container of ``pod`` (the kubelet's exec channel)."""
        from kubernetes.stream import stream

        output: str = stream(
            self.core.connect_get_namespaced_pod_exec, pod, self.namespace, command=command,
            container=GATEWAY_CONTAINER, stderr=False, stdin=False, stdout=True, tty=False,
            _request_timeout=REQUEST_TIMEOUT)
        return output

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
        # No admin key on this path: whoever holds a kubeconfig that may write the ConfigMap
        # decides, and the operator name is what they typed (not a credential's name).
        source = f"kubeconfig holder: triptyque {action} --target {self.where} (operator name as typed)"
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
        name = pod.metadata.name
        where = f"{self.namespace}/{name} (exec {GATEWAY_CONTAINER}: 127.0.0.1:{port}/readyz)"
        extra = {"node": (pod.spec.node_name if pod.spec else None) or "", "pod_ready": pod_ready(pod)}
        try:
            status, body = parse_readyz(self.exec_in_pod(name, readyz_command(port)))
        except Exception as exc:  # ApiException, the websocket's errors, unparseable output
            return NodeReport(name, where, reachable=False, seconds=time.perf_counter() - started,
                              detail=f"unreachable: {type(exc).__name__}: {exc}"[:300], extra=extra)
        return NodeReport(
            name, where, reachable=True, engaged=bool(body.get("kill_switch_engaged")),
            ready=status == 200, seconds=time.perf_counter() - started,
            detail=str(body.get("reason", "")), extra=extra,
        )

    def gateway_reports(self, selector: dict[str, str], port: int, engaged: bool | None,
                        started: float) -> list[NodeReport]:
        """Each gateway's own answer; with ``engaged``, wait until each says so (or time out)."""
        pods = self.gateway_pods(selector)
        if not pods:
            raise TargetError(f"no gateway pod in namespace {self.namespace}: is {self.where} up?")
        reports: dict[str, NodeReport] = {}
        while True:
            pending = [pod for pod in pods if pod.metadata.name not in reports
                       or reports[pod.metadata.name].engaged != engaged]
            # One exec per pod, all at once: each is a round trip through the kubelet.
            with ThreadPoolExecutor(max_workers=min(16, len(pending))) as pool:
                for pod, report in zip(pending, pool.map(lambda p: self._probe(p, port, started), pending),
                                       strict=True):
                    reports[pod.metadata.name] = report
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
