"""The kill switch's cluster backend: state and audit chain in one ConfigMap.

Every gateway replica and ``triptyque kill --target onprem|cloud`` share the ConfigMap
``cluster.configmap`` in ``cluster.namespace``:

    state.json       the KillState, as the file backend writes it
    audit.jsonl      the hash-chained audit entries (``chain.py``), in the file backend's format
    audit-base.json  once entries were archived: the last archive and the entry it ends with

A ConfigMap holds at most 1 MiB of data (Kubernetes documentation, "ConfigMaps": "The data
stored in a ConfigMap cannot exceed 1 MiB"). Before ``audit.jsonl`` reaches
``AUDIT_ROTATE_BYTES`` its entries move to an immutable archive ConfigMap
(``<configmap>-audit-001``, ``-002``...) and the live chain goes on from the archived head:
its first entry's ``prev`` is the last archived entry's hash and its ``seq`` the next one,
so the whole chain verifies across the cut (``ConfigMapAuditLog.verify`` walks the
archives). A decision that still cannot be recorded fails closed (``killswitch.py``).

It talks to the API server with the official ``kubernetes`` client. Writes are a read
then a replace carrying the object's ``resourceVersion``. When another writer got there
first the API server answers 409 and the write is redone on the fresh object, so the
chain stays one line of entries across replicas and no append is lost. A state whose
audit head is no longer the chain's last entry is not written: a newer decision was
recorded meanwhile and its writer saves it.

``watch`` lists the object once, then follows it with the client's watch (a
``metadata.name`` field selector, so a Role naming that one object is enough). The API
server pushes each change to every replica at once: they stop together within
milliseconds of the write, not at the next poll. The client is synchronous, so the
watch runs in a thread that hands each change to the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triptyque.errors import AuditError, StateError
from triptyque.gateway import chain, kube
from triptyque.gateway.chain import Verified
from triptyque.gateway.settings import AUDIT_ARCHIVES, ClusterState, audit_archive_name
from triptyque.gateway.state import KillState, Loaded, Observed, Unreadable, disagreement

log = logging.getLogger("triptyque.gateway.state_k8s")

STATE_KEY = "state.json"
AUDIT_KEY = "audit.jsonl"
BASE_KEY = "audit-base.json"
# A ConfigMap holds at most 1 MiB (its data, as the API server counts it); keep room for the
# state and the metadata.
AUDIT_LIMIT_BYTES = 900 * 1024
# The live segment is archived before it grows past this: far below the limit, so a kill
# still fits when an archive cannot be written at once.
AUDIT_ROTATE_BYTES = 256 * 1024
WRITE_ATTEMPTS = 8
WATCH_SECONDS = 300
REQUEST_TIMEOUT = 5.0

Mutation = Callable[[dict[str, str]], dict[str, str] | None]


class ConfigMapClient:
    """Read and optimistic-concurrency replace of one ConfigMap's data."""

    def __init__(
        self, cluster: ClusterState, configuration: Any | None,
        error: type[StateError] | type[AuditError],
    ) -> None:
        self.cluster = cluster
        self._configuration = configuration
        self._error = error
        self._core: Any | None = None

    def describe(self) -> str:
        return f"configmap {self.cluster.namespace}/{self.cluster.configmap}"

    def core(self) -> Any:
        """The CoreV1Api, made on first use (in the pod's service account by default)."""
        if self._core is None:
            try:
                configuration = self._configuration or kube.in_cluster()
            except StateError as exc:
                raise self._error(str(exc)) from None
            from kubernetes import client

            self._core = client.CoreV1Api(client.ApiClient(configuration))
        return self._core

    def failure(self, error: Exception, doing: str) -> Exception:
        from kubernetes.client.exceptions import ApiException

        where = self.describe()
        if not isinstance(error, ApiException):
            return self._error(f"{doing} {where} failed: {type(error).__name__}: {error}")
        if error.status == 404:
            return self._error(
                f"{where} does not exist; it is created with the deployment "
                "(`triptyque up` or the manifests of `triptyque render`)"
            )
        if error.status in (401, 403):
            return self._error(
                f"{doing} {where} was refused (HTTP {error.status}: {kube.api_message(error)}); "
                "check the Role bound to this service account"
            )
        return self._error(f"{doing} {where} failed: HTTP {error.status}: {kube.api_message(error)}")

    def get(self) -> Any:
        """The V1ConfigMap."""
        try:
            return self.core().read_namespaced_config_map(
                self.cluster.configmap, self.cluster.namespace, _request_timeout=REQUEST_TIMEOUT)
        except (StateError, AuditError):
            raise
        except Exception as exc:  # ApiException, urllib3's connection errors
            raise self.failure(exc, "reading") from None

    def data(self) -> dict[str, str]:
        return dict(self.get().data or {})

    def read_other(self, name: str) -> dict[str, str] | None:
        """The data of another ConfigMap of the namespace (an archive); None if there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.core().read_namespaced_config_map(name, self.cluster.namespace,
                                                         _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(f"reading configmap {self.cluster.namespace}/{name} failed: "
                              f"HTTP {exc.status}: {kube.api_message(exc)}") from None
        except (StateError, AuditError):
            raise
        except Exception as exc:
            raise self._error(f"reading configmap {self.cluster.namespace}/{name} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        return dict(obj.data or {})

    def create_immutable(self, name: str, data: dict[str, str]) -> dict[str, str]:
        """Create ConfigMap ``name`` with ``data``, immutable; if it exists already, its data."""
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": data,
                "metadata": {"name": name, "namespace": self.cluster.namespace,
                             "annotations": {"triptyque.io/archive-of": self.cluster.configmap}}}
        try:
            self.core().create_namespaced_config_map(self.cluster.namespace, body,
                                                     _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 409:
                raise self._error(f"archiving to configmap {self.cluster.namespace}/{name} failed: "
                                  f"HTTP {exc.status}: {kube.api_message(exc)}") from None
            existing = self.read_other(name)
            if existing is None:
                raise self._error(f"configmap {self.cluster.namespace}/{name} exists and vanished") from None
            return existing
        except (StateError, AuditError):
            raise
        except Exception as exc:
            raise self._error(f"archiving to configmap {self.cluster.namespace}/{name} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        return data

    def update(self, mutate: Mutation) -> Any:
        """Apply ``mutate`` to the data and replace the object; redone on a fresh copy after a conflict.

        ``mutate`` returns the new data, or None to leave the object as it is.
        """
        from kubernetes.client.exceptions import ApiException

        for attempt in range(WRITE_ATTEMPTS):
            current = self.get()
            data = mutate(dict(current.data or {}))
            if data is None:
                return current
            current.data = data
            try:
                return self.core().replace_namespaced_config_map(
                    self.cluster.configmap, self.cluster.namespace, current,
                    _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 409:
                    raise self.failure(exc, "writing") from None
            except Exception as exc:
                raise self.failure(exc, "writing") from None
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


class Base(BaseModel):
    """Where the live segment starts: after archive ``archives``, whose last entry is ``seq``/``head``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archives: int = Field(ge=1)
    seq: int = Field(ge=1)
    head: str
    signed: bool = False

    @property
    def start(self) -> tuple[int, str]:
        return self.seq, self.head


def parse_base(data: dict[str, str], where: str) -> Base | None:
    raw = data.get(BASE_KEY)
    if raw is None:
        return None
    try:
        return Base.model_validate_json(raw)
    except ValidationError as exc:
        raise AuditError(f"{where} key {BASE_KEY} is corrupt ({exc.errors()[0]['msg']}); "
                         "the live audit chain cannot be placed after its archives") from None


def _locator(where: str) -> Callable[[int], str]:
    return lambda number: f"{where} entry {number}"


def _text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


class ConfigMapStateStore:
    """``StateStore`` over the kill-switch ConfigMap (see the module docstring)."""

    def __init__(self, cluster: ClusterState, configuration: Any | None = None) -> None:
        self._api = ConfigMapClient(cluster, configuration, StateError)
        self._loaded: tuple[str, KillState | None] | None = None

    def describe(self) -> str:
        return self._api.describe()

    def load(self) -> KillState | None:
        obj = self._api.get()
        state = parse_state(dict(obj.data or {}), self.describe())
        self._loaded = (str(obj.metadata.resource_version), state)
        return state

    def save(self, state: KillState) -> None:
        payload = json.dumps(state.model_dump(mode="json"), sort_keys=True)

        def put_state(data: dict[str, str]) -> dict[str, str] | None:
            head = chain.head(audit_lines(data), self.describe())
            if state.audit_head is not None and head != state.audit_head:
                log.warning("a newer kill-switch decision is recorded; not overwriting it",
                            extra={"event": "state_superseded"})
                return None
            return {**data, STATE_KEY: payload}

        self._api.update(put_state)

    def _observe(self, data: dict[str, str] | None) -> Observed:
        try:
            return Loaded(parse_state(data or {}, self.describe()))
        except StateError as exc:
            return Unreadable(str(exc))

    def _follow(self, emit: Callable[[Observed], bool], stopped: threading.Event, interval: float) -> None:
        """The watch loop (in a thread): list, then watch from that version; relist on 410."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version, last = self._loaded or (None, None)
        last_seen: Observed | None = None if version is None else Loaded(last)
        selector = f"metadata.name={self._api.cluster.configmap}"
        namespace = self._api.cluster.namespace
        while not stopped.is_set():
            try:
                core = self._api.core()
                if version is None:
                    listing = core.list_namespaced_config_map(
                        namespace, field_selector=selector, _request_timeout=REQUEST_TIMEOUT)
                    version = str(listing.metadata.resource_version)
                    current = self._observe(listing.items[0].data if listing.items else None)
                    if last_seen is not None and current != last_seen and not emit(current):
                        return
                    last_seen = current
                watcher = watch.Watch()
                for event in watcher.stream(
                    core.list_namespaced_config_map, namespace, field_selector=selector,
                    resource_version=version, allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS, _request_timeout=(REQUEST_TIMEOUT, WATCH_SECONDS + 30),
                ):
                    if stopped.is_set():
                        watcher.stop()
                        return
                    raw = event.get("raw_object") or {}
                    version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                    if event["type"] == "BOOKMARK":
                        continue
                    current = (Unreadable(f"{self.describe()} was deleted") if event["type"] == "DELETED"
                               else self._observe(raw.get("data")))
                    if current != last_seen:
                        last_seen = current
                        if not emit(current):
                            return
            except ApiException as exc:
                if exc.status == 410:  # the version is too old: list again
                    version = None
                    continue
                log.warning("kill-switch watch interrupted: %s", self._api.failure(exc, "watching"),
                            extra={"event": "watch_retry"})
                stopped.wait(interval)
            except (StateError, AuditError) as exc:
                log.warning("kill-switch watch interrupted: %s", exc, extra={"event": "watch_retry"})
                stopped.wait(interval)
            except Exception as exc:  # urllib3's connection errors, a broken stream
                log.warning("kill-switch watch interrupted: %s: %s", type(exc).__name__, exc,
                            extra={"event": "watch_retry"})
                version = None
                stopped.wait(interval)

    async def watch(self, interval: float) -> AsyncGenerator[Observed, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Observed] = asyncio.Queue()
        stopped = threading.Event()

        def emit(observed: Observed) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, observed)
            except RuntimeError:  # the loop is closed: nobody listens any more
                return False
            return True

        thread = threading.Thread(target=self._follow, args=(emit, stopped, interval),
                                  name="killswitch-watch", daemon=True)
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            stopped.set()


class ConfigMapAuditLog:
    """``AuditSink`` over the same ConfigMap: one hash chain shared by every replica, its older
    entries in numbered immutable archives (see the module docstring)."""

    def __init__(self, cluster: ClusterState, configuration: Any | None = None, key: bytes | None = None) -> None:
        self._api = ConfigMapClient(cluster, configuration, AuditError)
        self.key = key

    def describe(self) -> str:
        return f"{self._api.describe()} key {AUDIT_KEY}"

    def _locate(self, number: int) -> str:
        return f"{self.describe()} entry {number}"

    def _segment(self, data: dict[str, str]) -> tuple[list[str], Base | None]:
        return audit_lines(data), parse_base(data, self._api.describe())

    def append(self, **fields: Any) -> dict[str, Any]:
        return self.append_after(None, fields)

    def append_after(self, after: tuple[int, str] | None, fields: dict[str, Any]) -> dict[str, Any]:
        appended: dict[str, Any] = {}

        def add_entry(data: dict[str, str]) -> dict[str, str]:
            lines, base = self._segment(data)
            entry, line = chain.next_entry(
                lines, self.describe(), time.time(), fields, key=self.key, after=after, locate=self._locate,
                start=base.start if base else None, signed_before=bool(base and base.signed))
            data = dict(data)
            if lines and len(_text([*lines, line]).encode()) > AUDIT_ROTATE_BYTES:
                lines, data[BASE_KEY] = self._archive(lines, base, data.get(BASE_KEY))
            text = _text([*lines, line])
            if len(text.encode()) > AUDIT_LIMIT_BYTES:
                raise AuditError(
                    f"{self.describe()} is full ({len(lines)} entries) and could not be archived; "
                    "copy audit.jsonl out of the ConfigMap for safekeeping before more kill-switch "
                    "actions can be recorded"
                )
            appended.clear()
            appended.update(entry)
            return {**data, AUDIT_KEY: text}

        self._api.update(add_entry)
        return dict(appended)

    def _archive(self, lines: list[str], base: Base | None, raw_base: str | None) -> tuple[list[str], str]:
        """Move ``lines`` (verified) to the next archive; the lines left live and the new base.

        Another replica may have created that archive first (its write of the live segment then
        lost the race or is on its way): its lines are a prefix of ours and only the rest stays."""
        number = (base.archives if base else 0) + 1
        name = audit_archive_name(self._api.cluster.configmap, number)
        if number > AUDIT_ARCHIVES:
            raise AuditError(f"{self.describe()}: {AUDIT_ARCHIVES} archives are used; export and remove "
                             "them (see the runbook, AuditWriteFailed) before more decisions are recorded")
        data = {AUDIT_KEY: _text(lines)} | ({BASE_KEY: raw_base} if raw_base else {})
        archived = audit_lines(self._api.create_immutable(name, data))
        if not archived or archived != lines[:len(archived)]:
            raise AuditError(f"archive configmap {self._api.cluster.namespace}/{name} exists and does not "
                             f"hold the first entries of {self.describe()}; run `triptyque audit verify`")
        last = json.loads(archived[-1])
        signed = bool(base and base.signed) or "mac" in last
        log.warning("audit log archived", extra={"event": "audit_archived", "archive": name,
                                                 "seq": last["seq"]})
        new_base = Base(archives=number, seq=int(last["seq"]), head=str(last["hash"]), signed=signed)
        return lines[len(archived):], new_base.model_dump_json()

    def head(self) -> str | None:
        lines, base = self._segment(self._api.data())
        found = chain.head(lines, self.describe())
        return found if found is not None or base is None else base.head

    def check(self) -> Verified:
        """The live segment verified from its base (the archives are checked by ``verify``)."""
        lines, base = self._segment(self._api.data())
        return self._verify_segment(lines, base)

    def _verify_segment(self, lines: list[str], base: Base | None, expected_head: str | None = None) -> Verified:
        return chain.verify(lines, self._locate, self.describe(), expected_head, key=self.key,
                            start=base.start if base else None, signed_before=bool(base and base.signed))

    def entries_after_last(self, *actions: str) -> list[dict[str, Any]]:
        """From the live segment (what an archive holds is over: approvals there have expired)."""
        lines, base = self._segment(self._api.data())
        self._verify_segment(lines, base)
        return chain.after_last([json.loads(line) for line in lines], *actions)

    def verify(self, expected_head: str | None = None) -> Verified:
        """Walk the whole chain, archives first; AuditError names the first entry that does not fit."""
        lines, base = self._segment(self._api.data())
        start: tuple[int, str] | None = None
        signed, total = False, 0
        recoveries: list[int] = []
        for number in range(1, (base.archives if base else 0) + 1):
            name = audit_archive_name(self._api.cluster.configmap, number)
            data = self._api.read_other(name)
            if data is None:
                raise AuditError(f"archive configmap {self._api.cluster.namespace}/{name} is missing: the "
                                 f"entries it held cannot be verified")
            where = f"configmap {self._api.cluster.namespace}/{name} key {AUDIT_KEY}"
            part = chain.verify(audit_lines(data), _locator(where), where, key=self.key, start=start,
                                signed_before=signed)
            start, total = (part.seq, part.head), total + part.entries
            recoveries += part.recoveries
            signed = signed or any("mac" in json.loads(line) for line in audit_lines(data)[-1:])
        if base is not None and start != base.start:
            raise AuditError(f"{self._api.describe()}: the live chain starts after entry {base.seq} "
                             f"({base.head[:12]}) but the archives end at entry {start and start[0]}")
        live = self._verify_segment(lines, base, expected_head)
        return Verified(entries=total + live.entries, head=live.head, seq=live.seq, action=live.action,
                        recoveries=(*recoveries, *live.recoveries))


def verify_cluster_chain(cluster: ClusterState, configuration: Any, key: bytes | None = None) -> Verified:
    """``triptyque audit verify --target onprem|cloud``: the whole chain, archives first, and the
    stored state checked against its last entry; AuditError (or StateError) says what is wrong."""
    audit = ConfigMapAuditLog(cluster, configuration, key)
    stored = ConfigMapStateStore(cluster, configuration).load()
    verified = audit.verify(stored.audit_head if stored is not None else None)
    problem = disagreement(stored, verified, key)
    if problem is not None:
        raise AuditError(f"{audit.describe()}: state and log disagree: {problem}")
    return verified
