"""The kill switch's cluster backend: state and audit chain in one ConfigMap.

Every gateway replica and ``triptyque kill --target onprem|cloud`` share the ConfigMap
``cluster.configmap`` in ``cluster.namespace``:

    state.json    the KillState, as the file backend writes it
    audit.jsonl   the hash-chained audit entries, in the file backend's format

Writes are a GET then a PUT carrying the object's ``resourceVersion``. When another
writer got there first the API server answers 409 and the write is redone on the
fresh object, so the chain stays one line of entries across replicas and no append is
lost. A state whose audit head is no longer the chain's last entry is not written: a
newer decision was recorded meanwhile and its writer saves it.

``watch`` lists the object once, then follows it with the Kubernetes watch API (a
``metadata.name`` field selector, so a Role naming that one object is enough). The API
server pushes each change to every replica at once: they stop together within
milliseconds of the write, not at the next poll.

The gateway talks to the API server with httpx and the pod's service-account token;
``triptyque kill`` uses the same classes with a connection built from a kubeconfig.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from triptyque.errors import AuditError, StateError
from triptyque.gateway.audit import GENESIS, Verified, entry_hash
from triptyque.gateway.settings import ClusterState
from triptyque.gateway.state import FAIL_CLOSED_OPERATOR, FAIL_CLOSED_PREFIX, KillState

log = logging.getLogger("triptyque.gateway.state_k8s")

STATE_KEY = "state.json"
AUDIT_KEY = "audit.jsonl"
# A ConfigMap holds at most 1 MiB; keep room for the state and the metadata.
AUDIT_LIMIT_BYTES = 900 * 1024
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WRITE_ATTEMPTS = 8
WATCH_SECONDS = 300

Mutation = Callable[[dict[str, str]], dict[str, str] | None]


@dataclass(frozen=True)
class KubeConnection:
    """How to reach the API server: URL, credentials and the CA to trust."""

    server: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: str | None = None
    client_cert: tuple[str, str] | None = None
    verify_tls: bool = True

    @classmethod
    def in_cluster(cls) -> KubeConnection:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise StateError(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset); the "
                "kubernetes state backend needs the pod's service account"
            )
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}",
            token_file=SERVICE_ACCOUNT / "token",
            ca_file=str(SERVICE_ACCOUNT / "ca.crt"),
        )

    @classmethod
    def from_kubeconfig(cls, context: str | None, config_file: str | None = None) -> KubeConnection:
        """Credentials from a kubeconfig (exec plugins included), via the kubernetes client."""
        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ImportError:
            raise StateError(
                "the kubernetes package is missing: pip install 'triptyque[k8s]'"
            ) from None
        configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=config_file, context=context, client_configuration=configuration
            )
        except (ConfigException, OSError) as exc:
            where = config_file or os.environ.get("KUBECONFIG", "~/.kube/config")
            raise StateError(f"cannot use kubeconfig {where} (context {context}): {exc}") from None
        if configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook(configuration)  # exec plugins fetch their token here
        # The key's name varies between client versions ("authorization", "BearerToken").
        token = next((str(v).removeprefix("Bearer ").strip() for v in (configuration.api_key or {}).values()
                      if str(v).startswith("Bearer ")), "")
        cert = (
            (configuration.cert_file, configuration.key_file)
            if configuration.cert_file and configuration.key_file else None
        )
        return cls(
            server=configuration.host.rstrip("/"),
            token=token or None,
            ca_file=configuration.ssl_ca_cert,
            client_cert=cert,
            verify_tls=bool(configuration.verify_ssl),
        )

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file is not None:
            # Bound service-account tokens rotate; the kubelet rewrites the file.
            token = self.token_file.read_text(encoding="utf-8").strip()
        headers = {"Accept": "application/json", "User-Agent": "triptyque-killswitch"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _client_options(self, timeout: httpx.Timeout) -> dict[str, Any]:
        verify: ssl.SSLContext | bool = False
        if self.server.startswith("https://"):
            verify = ssl.create_default_context(cafile=self.ca_file)
            if not self.verify_tls:
                verify.check_hostname = False
                verify.verify_mode = ssl.CERT_NONE
            if self.client_cert is not None:
                verify.load_cert_chain(*self.client_cert)
        return {"base_url": self.server, "verify": verify, "timeout": timeout,
                "headers": self.headers()}

    def client(self, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(**self._client_options(httpx.Timeout(timeout)))

    def async_client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        return httpx.AsyncClient(**self._client_options(timeout))


def _api_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    return str(body["message"]) if isinstance(body, dict) and "message" in body else response.text[:200]


class ConfigMapClient:
    """GET and optimistic-concurrency PUT of one ConfigMap's data."""

    def __init__(
        self, cluster: ClusterState, connection: KubeConnection | None,
        error: type[StateError] | type[AuditError],
    ) -> None:
        self.cluster = cluster
        self._connection = connection
        self._error = error

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.cluster.namespace}/configmaps/{self.cluster.configmap}"

    @property
    def collection(self) -> str:
        return f"/api/v1/namespaces/{self.cluster.namespace}/configmaps"

    def describe(self) -> str:
        return f"configmap {self.cluster.namespace}/{self.cluster.configmap}"

    def connection(self) -> KubeConnection:
        if self._connection is None:
            try:
                self._connection = KubeConnection.in_cluster()
            except StateError as exc:
                raise self._error(str(exc)) from None
        return self._connection

    def failure(self, response: httpx.Response, doing: str) -> Exception:
        where = self.describe()
        if response.status_code == 404:
            return self._error(
                f"{where} does not exist; it is created with the deployment "
                "(`triptyque up` or the manifests of `triptyque render`)"
            )
        if response.status_code in (401, 403):
            return self._error(
                f"{doing} {where} was refused (HTTP {response.status_code}: "
                f"{_api_message(response)}); check the Role bound to this service account"
            )
        return self._error(f"{doing} {where} failed: HTTP {response.status_code}: {_api_message(response)}")

    def _request(self, method: str, doing: str, **kwargs: Any) -> dict[str, Any]:
        try:
            with self.connection().client() as client:
                response = client.request(method, self.path, **kwargs)
        except (httpx.HTTPError, OSError) as exc:
            raise self._error(f"{doing} {self.describe()} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code == 409:
            return {}
        if response.status_code != 200:
            raise self.failure(response, doing)
        body: dict[str, Any] = response.json()
        return body

    def get(self) -> dict[str, Any]:
        return self._request("GET", "reading")

    def update(self, mutate: Mutation) -> dict[str, Any]:
        """Apply ``mutate`` to the data and PUT it; redone on a fresh copy after a conflict.

        ``mutate`` returns the new data, or None to leave the object as it is.
        """
        for attempt in range(WRITE_ATTEMPTS):
            current = self.get()
            data = mutate(dict(current.get("data") or {}))
            if data is None:
                return current
            body = {**current, "data": data}
            written = self._request("PUT", "writing", json=body)
            if written:
                return written
            time.sleep(0.01 * (attempt + 1))
        raise self._error(
            f"writing {self.describe()} kept conflicting with other writers ({WRITE_ATTEMPTS} tries)"
        )


def parse_state(data: dict[str, str], where: str) -> KillState | None:
    raw = data.get(STATE_KEY)
    if raw is None:
        return None
    try:
        return KillState.model_validate_json(raw)
    except ValidationError as exc:
        raise StateError(
            f"kill-switch state in {where} is corrupt ({exc.errors()[0]['msg']}); "
            "resume explicitly once you have checked why"
        ) from None


def audit_lines(data: dict[str, str]) -> list[str]:
    return [line for line in data.get(AUDIT_KEY, "").splitlines() if line.strip()]


def _last_hash(lines: list[str], where: str) -> str | None:
    if not lines:
        return None
    try:
        return str(json.loads(lines[-1])["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{where}: the last audit entry is not valid ({exc})") from None


def _fail_closed(why: str) -> KillState:
    # The form the kill switch recognises as "the store cannot vouch for a state".
    return KillState(engaged=True, operator=FAIL_CLOSED_OPERATOR, reason=f"{FAIL_CLOSED_PREFIX}{why}")


class ConfigMapStateStore:
    """``StateStore`` over the kill-switch ConfigMap (see the module docstring)."""

    def __init__(self, cluster: ClusterState, connection: KubeConnection | None = None) -> None:
        self._api = ConfigMapClient(cluster, connection, StateError)
        self._loaded: tuple[str, KillState | None] | None = None

    def describe(self) -> str:
        return self._api.describe()

    def load(self) -> KillState | None:
        obj = self._api.get()
        state = parse_state(obj.get("data") or {}, self.describe())
        self._loaded = (str(obj["metadata"]["resourceVersion"]), state)
        return state

    def save(self, state: KillState) -> None:
        payload = json.dumps(state.model_dump(mode="json"), sort_keys=True)

        def put_state(data: dict[str, str]) -> dict[str, str] | None:
            head = _last_hash(audit_lines(data), self.describe())
            if state.audit_head is not None and head != state.audit_head:
                log.warning("a newer kill-switch decision is recorded; not overwriting it",
                            extra={"event": "state_superseded"})
                return None
            return {**data, STATE_KEY: payload}

        self._api.update(put_state)

    def _state_of(self, obj: dict[str, Any]) -> KillState | None:
        # None (no state.json yet, or a re-created empty object) leaves the switch as it is.
        try:
            return parse_state(obj.get("data") or {}, self.describe())
        except StateError as exc:
            return _fail_closed(str(exc))

    async def watch(self, interval: float) -> AsyncIterator[KillState | None]:
        version, last = self._loaded or (None, None)
        first = version is None
        params = {"fieldSelector": f"metadata.name={self._api.cluster.configmap}"}
        timeout = httpx.Timeout(5.0, read=WATCH_SECONDS + 30)
        while True:
            try:
                async with self._api.connection().async_client(timeout) as client:
                    if version is None:
                        listing = await client.get(self._api.collection, params=params)
                        if listing.status_code != 200:
                            raise self._api.failure(listing, "listing")
                        body = listing.json()
                        version = str(body["metadata"]["resourceVersion"])
                        items = body.get("items") or []
                        current = self._state_of(items[0]) if items else None
                        if not first and current != last:
                            yield current
                        last, first = current, False
                    async with client.stream("GET", self._api.collection, params={
                        **params, "watch": "true", "resourceVersion": version,
                        "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS),
                    }) as response:
                        if response.status_code == 410:
                            version = None
                            continue
                        if response.status_code != 200:
                            await response.aread()
                            raise self._api.failure(response, "watching")
                        async for line in response.aiter_lines():
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            kind, obj = event.get("type"), event.get("object") or {}
                            if kind == "ERROR":
                                # 410 Gone: the version is too old; list again.
                                version = None
                                break
                            version = str(obj["metadata"]["resourceVersion"])
                            if kind == "BOOKMARK":
                                continue
                            current = (
                                _fail_closed(f"{self.describe()} was deleted")
                                if kind == "DELETED" else self._state_of(obj)
                            )
                            if current != last:
                                last = current
                                yield current
            except (httpx.HTTPError, ValueError, KeyError, StateError) as exc:
                log.warning("kill-switch watch interrupted: %s", exc, extra={"event": "watch_retry"})
                await asyncio.sleep(interval)


class ConfigMapAuditLog:
    """``AuditSink`` over the same ConfigMap: one hash chain shared by every replica."""

    def __init__(self, cluster: ClusterState, connection: KubeConnection | None = None) -> None:
        self._api = ConfigMapClient(cluster, connection, AuditError)

    def describe(self) -> str:
        return f"{self._api.describe()} key {AUDIT_KEY}"

    def append(self, **fields: Any) -> dict[str, Any]:
        appended: dict[str, Any] = {}

        def add_entry(data: dict[str, str]) -> dict[str, str]:
            lines = audit_lines(data)
            prev = _last_hash(lines, self.describe()) or GENESIS
            entry: dict[str, Any] = {"seq": len(lines) + 1, "ts": time.time(), **fields, "prev": prev}
            entry["hash"] = entry_hash(entry)
            text = "".join(f"{line}\n" for line in lines) + json.dumps(entry, sort_keys=True) + "\n"
            if len(text.encode()) > AUDIT_LIMIT_BYTES:
                raise AuditError(
                    f"{self.describe()} is full ({len(lines)} entries); copy audit.jsonl out of the "
                    "ConfigMap for safekeeping before more kill-switch actions can be recorded"
                )
            appended.clear()
            appended.update(entry)
            return {**data, AUDIT_KEY: text}

        self._api.update(add_entry)
        return dict(appended)

    def head(self) -> str | None:
        return _last_hash(audit_lines(self._api.get().get("data") or {}), self.describe())

    def verify(self, expected_head: str | None = None) -> Verified:
        """Walk the chain; AuditError names the first entry that does not fit."""
        prev, count = GENESIS, 0
        for number, line in enumerate(audit_lines(self._api.get().get("data") or {}), start=1):
            where = f"{self.describe()} entry {number}"
            try:
                entry = json.loads(line)
            except ValueError:
                raise AuditError(f"{where} is not valid JSON; the log was altered") from None
            if not isinstance(entry, dict) or entry.get("prev") != prev:
                raise AuditError(f"{where} does not follow the previous entry (removed, inserted "
                                 "or reordered)")
            if entry_hash(entry) != entry.get("hash"):
                raise AuditError(f"{where} was modified after it was written")
            prev, count = entry["hash"], count + 1
        if expected_head is not None and expected_head != prev:
            raise AuditError(f"{self.describe()} ends at {prev[:12]} but the state records "
                             f"{expected_head[:12]}: entries were cut from the end")
        return Verified(entries=count, head=prev)
