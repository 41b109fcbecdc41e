"""A FAKE Kubernetes API server: the small subset the kill switch and the target use.

This is not Kubernetes. It speaks, over real HTTP on 127.0.0.1, the requests
triptyque sends through the official ``kubernetes`` client (whose models refuse
objects a real API server would never send), with the semantics they rely on:

- ConfigMaps: GET, PUT and create (POST, 409 AlreadyExists) one object, with
  resourceVersion preconditions (409 on a stale version), a bearer token (401) and
  per-name authorisation (403; create cannot be limited by name in RBAC, so it is
  allowed unless ``refuse_create``); the API server's own validation of a ConfigMap:
  at most 1 MiB of data values in all (``ValidateConfigMap`` sums ``len(value)`` over
  data and binaryData and refuses more than ``MaxSecretSize``, 1048576, with 422
  Invalid: kubernetes/kubernetes pkg/apis/core/validation/validation.go), and no data
  change once ``immutable`` is set (``ValidateConfigMapUpdate``, 422);
- list and watch with a ``metadata.name`` field selector, streaming ADDED, MODIFIED,
  DELETED and ERROR (410 Gone) events as JSON lines; a watch from a resourceVersion
  first replays the events after it, as the real one does;
- the Deployment ``scale`` subresource (GET, merge-PATCH);
- listing pods by label selector, and the pod proxy, forwarded to real local servers.

Everything else (admission, RBAC rules, server-side apply, etcd) is absent. Tests that
use it say what it proves: the client side of the protocol and the cross-replica
behaviour, not a real API server's.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TOKEN = "fake-token-for-tests"
# core.MaxSecretSize: the most data a ConfigMap (or a Secret) may hold.
MAX_CONFIGMAP_BYTES = 1024 * 1024


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": reason, "message": message, "code": code}, status_code=code)


def _invalid(name: str, body: dict[str, Any]) -> Response | None:
    size = sum(len(value.encode()) for value in (body.get("data") or {}).values())
    size += sum(len(base64.b64decode(value)) for value in (body.get("binaryData") or {}).values())
    if size > MAX_CONFIGMAP_BYTES:
        return _status(422, "Invalid", f'ConfigMap "{name}" is invalid: []: Too long: must have at most '
                       f"{MAX_CONFIGMAP_BYTES} bytes")
    return None


@dataclass
class FakeApiServer:
    namespace: str
    allowed_configmaps: set[str] = field(default_factory=set)
    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    scales: dict[str, int] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> base URL it is served at
    conflicts_to_inject: int = 0
    refuse_create: bool = False
    gone_to_inject: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    _version: int = 100
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watchers: list[tuple[str, asyncio.Queue[dict[str, Any] | None]]] = field(default_factory=list)
    _history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    # ---- state helpers used by tests (from the test's thread) ------------------------------

    def create_configmap(self, name: str, data: dict[str, str] | None = None) -> None:
        with self._lock:
            obj = {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": self.namespace}}
            if data is not None:
                obj["data"] = dict(data)
            self._store(name, obj, "ADDED")

    def delete_configmap(self, name: str) -> None:
        with self._lock:
            obj = self.configmaps.pop(name)
            self._version += 1
            obj["metadata"]["resourceVersion"] = str(self._version)
            self._notify(name, "DELETED", obj)

    def data(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self.configmaps[name].get("data") or {})

    def _store(self, name: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        self._version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._version)
        self.configmaps[name] = obj
        self._notify(name, event, obj)
        return obj

    def _notify(self, name: str, event: str, obj: dict[str, Any]) -> None:
        message = {"type": event, "object": copy.deepcopy(obj)}
        self._history.append((self._version, name, message))
        for watched, queue in list(self._watchers):
            if watched == name and self._loop is not None:
                self._loop.call_soon_threadsafe(queue.put_nowait, message)

    # ---- HTTP -------------------------------------------------------------------------------

    def _authorised(self, request: Request, name: str | None = None) -> Response | None:
        self.requests.append((request.method, request.url.path))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 7235 section 2.1); the client in a pod sends "bearer".
        if scheme.lower() != "bearer" or token != TOKEN:
            return _status(401, "Unauthorized", "Unauthorized")
        if request.path_params.get("ns", self.namespace) != self.namespace:
            return _status(403, "Forbidden", "namespace not allowed")
        if name is not None and self.allowed_configmaps and name not in self.allowed_configmaps:
            return _status(403, "Forbidden", f'configmaps "{name}" is forbidden: not in the Role')
        return None

    async def _configmap(self, request: Request) -> Response:
        name = request.path_params["name"]
        refused = self._authorised(request, name)
        if refused is not None:
            return refused
        body = await request.json() if request.method == "PUT" else None
        with self._lock:
            current = self.configmaps.get(name)
            if current is None:
                return _status(404, "NotFound", f'configmaps "{name}" not found')
            if body is None:
                return JSONResponse(copy.deepcopy(current))
            if self.conflicts_to_inject > 0:
                self.conflicts_to_inject -= 1
                return _status(409, "Conflict", "injected conflict")
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified; please apply your "
                               "changes to the latest version and try again")
            invalid = _invalid(name, body)
            if invalid is None and current.get("immutable") and (
                    body.get("data") != current.get("data") or not body.get("immutable")):
                invalid = _status(422, "Invalid", f'ConfigMap "{name}" is invalid: data: Forbidden: '
                                  "field is immutable when `immutable` is set")
            if invalid is not None:
                return invalid
            return JSONResponse(self._store(name, body, "MODIFIED"))

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        name = body["metadata"]["name"]
        refused = self._authorised(request)
        if refused is not None:
            return refused
        if self.refuse_create:
            return _status(403, "Forbidden", 'configmaps is forbidden: cannot create resource "configmaps"')
        invalid = _invalid(name, body)
        if invalid is not None:
            return invalid
        with self._lock:
            if name in self.configmaps:
                return _status(409, "AlreadyExists", f'configmaps "{name}" already exists')
            body["metadata"]["namespace"] = self.namespace
            return JSONResponse(self._store(name, body, "ADDED"), status_code=201)

    async def _configmaps(self, request: Request) -> Response:
        selector = request.query_params.get("fieldSelector", "")
        name = selector.removeprefix("metadata.name=") if selector.startswith("metadata.name=") else None
        refused = self._authorised(request, name)
        if refused is not None:
            return refused
        if name is None:
            return _status(403, "Forbidden", "list without a metadata.name selector is not allowed")
        if request.query_params.get("watch") in ("true", "1"):
            return self._watch(name, int(request.query_params.get("resourceVersion") or 0))
        with self._lock:
            items = [copy.deepcopy(self.configmaps[name])] if name in self.configmaps else []
            return JSONResponse({"kind": "ConfigMapList", "apiVersion": "v1", "items": items,
                                 "metadata": {"resourceVersion": str(self._version)}})

    def _watch(self, name: str, since: int) -> Response:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        with self._lock:
            if self.gone_to_inject > 0:
                self.gone_to_inject -= 1
                queue.put_nowait({"type": "ERROR", "object": {
                    "kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}})
            for version, watched, message in self._history:
                if watched == name and version > since:
                    queue.put_nowait(message)
            entry = (name, queue)
            self._watchers.append(entry)

        async def events() -> AsyncIterator[bytes]:
            try:
                while self._server is not None and not self._server.should_exit:
                    try:
                        message = await asyncio.wait_for(queue.get(), timeout=0.2)
                    except TimeoutError:
                        continue
                    if message is None:
                        return
                    yield (json.dumps(message) + "\n").encode()
            finally:
                self._watchers.remove(entry)

        return StreamingResponse(events(), media_type="application/json")

    def end_watches(self) -> None:
        """Close every open watch, as an API server does at timeoutSeconds."""
        for _, queue in list(self._watchers):
            if self._loop is not None:
                self._loop.call_soon_threadsafe(queue.put_nowait, None)

    async def _scale(self, request: Request) -> Response:
        name = request.path_params["name"]
        refused = self._authorised(request)
        if refused is not None:
            return refused
        if name not in self.scales:
            return _status(404, "NotFound", f'deployments.apps "{name}" not found')
        if request.method == "PATCH":
            if request.headers.get("content-type") != "application/merge-patch+json":
                return _status(415, "UnsupportedMediaType", "use a merge patch")
            self.scales[name] = int((await request.json())["spec"]["replicas"])
        return JSONResponse({"kind": "Scale", "apiVersion": "autoscaling/v1",
                             "metadata": {"name": name, "namespace": self.namespace},
                             "spec": {"replicas": self.scales[name]}})

    async def _pods(self, request: Request) -> Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        # A real pod always has containers: the official client refuses a PodSpec without them
        # (the hand-written client never noticed this fake was laxer than Kubernetes).
        items = [{"metadata": {"name": name, "namespace": self.namespace},
                  "spec": {"nodeName": f"node-{index}",
                           "containers": [{"name": "gateway", "image": "gateway"}]}}
                 for index, name in enumerate(sorted(self.pods))]
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "items": items,
                             "metadata": {"resourceVersion": str(self._version)}})

    async def _proxy(self, request: Request) -> Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        pod = request.path_params["pod"].split(":", 1)[0]
        base = self.pods.get(pod)
        if base is None:
            return _status(404, "NotFound", f'pods "{pod}" not found')
        async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
            upstream = await client.get("/" + request.path_params["path"])
        return Response(upstream.content, status_code=upstream.status_code,
                        media_type=upstream.headers.get("content-type"))

    def app(self) -> Starlette:
        ns = "/api/v1/namespaces/{ns}"
        return Starlette(routes=[
            Route(ns + "/configmaps/{name}", self._configmap, methods=["GET", "PUT"]),
            Route(ns + "/configmaps", self._configmaps, methods=["GET"]),
            Route(ns + "/configmaps", self._create, methods=["POST"]),
            Route("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", self._scale,
                  methods=["GET", "PATCH"]),
            Route(ns + "/pods", self._pods, methods=["GET"]),
            Route(ns + "/pods/{pod}/proxy/{path:path}", self._proxy, methods=["GET"]),
        ])

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=0, log_level="error",
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            assert self._server is not None
            self._loop.run_until_complete(self._server.serve())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-apiserver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake API server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
