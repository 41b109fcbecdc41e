"""Pull mode, the controller's side: what rarely-online nodes fetch, and what they report.

A pull node runs the same roles as a pushed one (``playbooks/site.yml``), with
``ansible-playbook -c local`` on the node, from a publication it fetched over HTTP.
``ansible-pull`` itself checks playbooks out of a version-control repository (``-U URL``,
git by default; https://docs.ansible.com/ansible/5/cli/ansible-pull.html); a site that
reaches only the controller gets the same result from files: the agent
(``playbooks/roles/triptyque_pull/files/triptyque-pull``) does what ansible-pull does,
from a bundle instead of a checkout.

The publication, under ``<edge state>/pull/``::

    secret              the fleet's pull secret (mode 600); a node's token is its HMAC
    publication.json    the files nodes fetch (name, SHA-256, bytes) and where they lie here
    vars-<sha>.json     the playbook's variables, rendered from the spec as for push
    playbooks-<sha>.tar playbooks/ (site.yml, ansible.cfg, roles), unchanged
    collections-<sha>.tar  the Ansible collections the roles use (community.general, ansible.posix)
    nodes.json          each pull node's own inventory variables (triptyque_* only)
    killswitch.json     the fleet's kill state: engaged or not, with a sequence number
    reports/<node>.json the last report of each node (release, health, kill state)

The bundle's archives, ansible-core's wheels (the version in requirements.lock) and pip
are served from where they already lie. Every answer about the channel or the kill state
is signed with the node's token (HMAC-SHA256 in ``X-Triptyque-Signature``); every file
is checked against its SHA-256 in the signed channel.

Routes (``serve``): ``GET /v1/pull/{node}/channel``, ``GET /v1/pull/{node}/killswitch``,
``GET /v1/pull/files/{name}``, ``PUT /v1/pull/{node}/report``; each needs
``Authorization: Bearer <node token>`` and ``X-Triptyque-Node: <node>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triptyque.edge.bundle import Manifest, pip_wheel, sha256_file, write_reproducible_tar
from triptyque.edge.inventory import MODE_VAR
from triptyque.errors import TargetError
from triptyque.types import Progress

# The collections the roles use (playbooks/requirements.yml), taken from the controller's
# `ansible` package: nodes have no Galaxy either.
COLLECTIONS = ("community/general", "ansible/posix")
# A node's own inventory variables that travel to it: its choices, never the controller's
# connection settings (ansible_*: keys, users, paths of the controller).
NODE_VAR_PREFIXES = ("triptyque_", "node_exporter_", "firewall_")
NODE_VAR_EXCLUDED = frozenset({"triptyque_gateway_url", MODE_VAR})
SIGNATURE_HEADER = "X-Triptyque-Signature"
NODE_HEADER = "X-Triptyque-Node"
# The largest report a node may send (a JSON object of a few hundred bytes in practice).
MAX_REPORT_BYTES = 64 * 1024
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def pull_dir(edge_root: Path) -> Path:
    return edge_root / "pull"


def read_publication(folder: Path) -> dict[str, Any]:
    """The publication.json of a pull folder (what nodes fetch and where it lies here)."""
    loaded: dict[str, Any] = json.loads((folder / "publication.json").read_text())
    return loaded


def current_publication(edge_root: Path) -> dict[str, Any] | None:
    """What this controller publishes for its pull nodes now; None before the first publication."""
    folder = pull_dir(edge_root)
    return read_publication(folder) if (folder / "publication.json").exists() else None


# ---- secrets and signatures -------------------------------------------------------------


def fleet_secret(edge_root: Path, *, create: bool = False) -> bytes:
    """The fleet's pull secret (made once, mode 600); nodes hold only their own token."""
    path = pull_dir(edge_root) / "secret"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        raise TargetError(f"no pull publication in {pull_dir(edge_root)}: run "
                          "`triptyque up edge --inventory FILE` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value.hex())
    return value


def node_token(secret: bytes, node: str) -> str:
    """A node's bearer token: a compromised site can speak for itself only."""
    return hmac.new(secret, f"triptyque-pull-node:{node}".encode(), hashlib.sha256).hexdigest()


def sign(token: str, body: bytes) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


# ---- the kill state the fleet is in -----------------------------------------------------


def kill_state(edge_root: Path) -> dict[str, Any]:
    path = pull_dir(edge_root) / "killswitch.json"
    if not path.exists():
        return {"engaged": False, "hard": False, "seq": 0, "operator": "", "reason": "", "at": 0.0}
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def record_kill_state(edge_root: Path, *, engaged: bool, operator: str, reason: str,
                      hard: bool = False) -> dict[str, Any]:
    """The fleet's decision, for the nodes that were not reachable when it was made: each pull
    node reads it on reconnecting, and on boot before its gateway starts. ``hard``: the engines
    stop too (``kill --hard``); the node's agent stops its own, and starts it again on release."""
    state = {"engaged": engaged, "hard": engaged and hard, "seq": int(kill_state(edge_root)["seq"]) + 1,
             "operator": operator, "reason": reason, "at": time.time()}
    _write_json(pull_dir(edge_root) / "killswitch.json", state)
    return state


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


# ---- the publication ----------------------------------------------------------------------


def node_vars(hostvars: dict[str, Any]) -> dict[str, Any]:
    """The node's own choices from the inventory (triptyque_engine_device, triptyque_root...)."""
    return {k: v for k, v in sorted(hostvars.items())
            if k.startswith(NODE_VAR_PREFIXES) and k not in NODE_VAR_EXCLUDED
            and not k.startswith("triptyque_pull_")}


def _deterministic_tar(out: Path, files: dict[str, Path]) -> Path:
    return out if out.exists() else write_reproducible_tar(out, files)


def _tree(folder: Path, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    return {f"{prefix}/{p.relative_to(folder)}": p for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
            and not any(part in skip for part in p.relative_to(folder).parts)}


def _content_named(stem: str, files: dict[str, Path], out_dir: Path) -> Path:
    listing = "".join(f"{name} {sha256_file(path)}\n" for name, path in sorted(files.items()))
    digest = hashlib.sha256(listing.encode()).hexdigest()[:16]
    return _deterministic_tar(out_dir / f"{stem}-{digest}.tar", files)


def playbooks_tar(playbooks: Path, out_dir: Path) -> Path:
    """playbooks/ as the nodes run it: the roles unchanged, no inventories of the controller."""
    return _content_named("playbooks", _tree(playbooks, "playbooks", skip=("inventories",)), out_dir)


def collections_tar(cache_dir: Path) -> Path:
    """community.general and ansible.posix from the controller's `ansible` package."""
    import ansible_collections  # the `ansible` package (the edge extra)

    base = Path(next(iter(ansible_collections.__path__)))
    files: dict[str, Path] = {}
    for name in COLLECTIONS:
        if not (base / name / "MANIFEST.json").is_file():
            raise TargetError(f"the Ansible collection {name.replace('/', '.')} is not installed: "
                              "pip install 'triptyque[edge]'")
        files |= _tree(base / name, f"ansible_collections/{name}")
    out = cache_dir / "pull"
    out.mkdir(parents=True, exist_ok=True)
    return _content_named("collections", files, out)


def locked_version(lock: Path, project: str) -> str:
    """``project``'s pinned version in requirements.lock."""
    for line in lock.read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == project and version:
            return version.split(";")[0].strip()
    raise TargetError(f"{lock} pins no {project}: run `make lock`")


def node_part(hostvars: dict[str, Any]) -> tuple[str, str]:
    """The (platform, Python) a node runs, as ``inventory.parts_needed`` reads it: its
    triptyque_platform and triptyque_python, else the controller's."""
    from triptyque.edge.bundle import controller_part
    from triptyque.edge.platforms import split_platform

    if hostvars.get("triptyque_platform"):
        distribution, arch = split_platform(str(hostvars["triptyque_platform"]))
        return f"{distribution.release}-{arch}", str(hostvars.get("triptyque_python") or distribution.python)
    platform, python = controller_part()
    return platform, str(hostvars.get("triptyque_python") or python)


def ansible_wheels(cache_dir: Path, lock: Path, part: tuple[str, str] | None = None) -> list[Path]:
    """ansible-core at its locked version and its dependencies, as wheels for the node's
    Python and C library (``part``; the controller's own when None)."""
    from triptyque.cachefill import fill_once
    from triptyque.edge.bundle import controller_part
    from triptyque.edge.platforms import download_wheels, split_platform

    version = locked_version(lock, "ansible-core")
    native = part is None or part == controller_part()
    platform, python = part or controller_part()
    key = hashlib.sha256(lock.read_bytes() + f"{platform}|{python}".encode()).hexdigest()[:12]

    def fill(folder: Path) -> str:
        requirement = f"ansible-core=={version}"
        if native:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--quiet",
                 "--only-binary=:all:", "--dest", str(folder), "--constraint", str(lock), requirement],
                capture_output=True, text=True, check=False)
            if result.returncode != 0:
                tail = "\n".join(result.stderr.strip().splitlines()[-5:])
                raise TargetError(f"pip could not download ansible-core {version} for the pull nodes:\n{tail}")
        else:
            distribution, arch = split_platform(platform)
            download_wheels([requirement], folder, python=python, distribution=distribution, arch=arch,
                            constraints=lock)
        return version

    folder = fill_once(cache_dir / "wheelhouse" / f"ansible-core-{version}-{platform}-py{python}-{key}", fill)
    return sorted(folder.glob("*.whl"))


@dataclass(frozen=True)
class Publication:
    id: str
    folder: Path

    def load(self) -> dict[str, Any]:
        return read_publication(self.folder)


def publish(edge_root: Path, *, manifest: Manifest, bundle_dir: Path, extravars: dict[str, Any],
            nodes: dict[str, dict[str, Any]], playbooks: Path, cache_dir: Path, lock: Path,
            progress: Progress) -> Publication:
    """Write what pull nodes fetch: the same variables as a push, the roles, Ansible itself.

    ``nodes`` maps each pull node to its inventory variables."""
    folder = pull_dir(edge_root)
    folder.mkdir(parents=True, exist_ok=True)
    fleet_secret(edge_root, create=True)
    progress(f"pull: publishing bundle {manifest.id} for {len(nodes)} pull node(s)")
    # The nodes rewrite each archive's path to where they downloaded it.
    shared = dict(extravars)
    shared["triptyque_bundle_components"] = _archive_names(extravars["triptyque_bundle_components"])
    shared["triptyque_bundle_parts"] = {
        key: {**part, "components": _archive_names(part["components"])}
        for key, part in extravars.get("triptyque_bundle_parts", {}).items()}
    body = json.dumps(shared, indent=2, sort_keys=True).encode()
    vars_file = folder / f"vars-{hashlib.sha256(body).hexdigest()[:16]}.json"
    if not vars_file.exists():
        vars_file.write_bytes(body)
    pip = pip_wheel(cache_dir)
    parts = {name: node_part(hostvars) for name, hostvars in nodes.items()}
    by_part = {part: ansible_wheels(cache_dir, lock, part) for part in sorted(set(parts.values()))}
    ansible = [wheel for wheels in by_part.values() for wheel in wheels]
    files: dict[str, Path] = {
        vars_file.name: vars_file,
        **{c.archive: bundle_dir / c.archive for c in manifest.every_component()},
        **{w.name: w for w in ansible},
        pip.name: pip,
    }
    books = playbooks_tar(playbooks, folder)
    collections = collections_tar(cache_dir)
    files[books.name] = books
    files[collections.name] = collections
    listing = {name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
               for name, path in sorted(files.items())}
    ident = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:16]
    document = {
        "id": ident, "bundle": manifest.id, "published_at": time.time(),
        "vars": vars_file.name, "playbooks": books.name, "collections": collections.name,
        "pip": pip.name,
        "ansible": {name: sorted(w.name for w in by_part[part]) for name, part in sorted(parts.items())},
        "files": listing,
        "nodes": {name: node_vars(hostvars) for name, hostvars in sorted(nodes.items())},
        "archives": {name: node_archives(manifest, hostvars, str(extravars["triptyque_default_engine_device"]))
                     for name, hostvars in sorted(nodes.items())},
        # Where each file lies on this controller: read by the server, never sent to a node.
        "paths": {name: str(path.resolve()) for name, path in sorted(files.items())},
    }
    _write_json(folder / "publication.json", document)
    _prune(folder, keep={vars_file.name, books.name})
    progress(f"pull: publication {ident} ready ({len(files)} files)")
    return Publication(ident, folder)


def _archive_names(components: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {**c, "archive": Path(str(c["archive"])).name} for name, c in components.items()}


def node_archives(manifest: Manifest, hostvars: dict[str, Any], default_device: str) -> list[str]:
    """The bundle archives one node installs (its part, its engine build): a CPU site never
    downloads the GPU build."""
    from triptyque.edge.platforms import normalise_platform

    device = str(hostvars.get("triptyque_engine_device") or default_device)
    components = manifest.components
    if hostvars.get("triptyque_platform"):
        platform = normalise_platform(str(hostvars["triptyque_platform"]))
        python = hostvars.get("triptyque_python")
        for part in manifest.parts.values():
            if part.platform == platform and (python is None or part.python == str(python)):
                components = part.components
    wanted = (f"engine-{device}", "gateway", "model", "system")
    return sorted(components[name].archive for name in wanted if name in components)


def _prune(folder: Path, keep: set[str]) -> None:
    for old in [*folder.glob("vars-*.json"), *folder.glob("playbooks-*.tar")]:
        if old.name not in keep:
            old.unlink()


def channel(publication: dict[str, Any], node: str, kill: dict[str, Any]) -> dict[str, Any]:
    """What one node is told to converge to (its revision covers its own variables too)."""
    own = publication["nodes"][node]
    revision = hashlib.sha256(json.dumps([publication["id"], own], sort_keys=True).encode()).hexdigest()[:16]
    return {
        "node": node, "revision": revision, "publication": publication["id"],
        "bundle": publication["bundle"], "vars": publication["vars"],
        "playbooks": publication["playbooks"], "collections": publication["collections"],
        "pip": publication["pip"], "ansible": publication["ansible"][node], "files": publication["files"],
        "hostvars": own, "archives": publication["archives"][node], "killswitch": kill,
    }


# ---- reports ------------------------------------------------------------------------------


def reports(edge_root: Path) -> dict[str, dict[str, Any]]:
    """The last report of every pull node, with when it arrived."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((pull_dir(edge_root) / "reports").glob("*.json")):
        with contextlib.suppress(ValueError):
            found[path.stem] = json.loads(path.read_text())
    return found


def report_summary(report: dict[str, Any] | None, publication: dict[str, Any] | None,
                   now: float) -> dict[str, Any]:
    """What `triptyque status` shows for a pull node."""
    if report is None:
        return {"mode": "pull", "reported": False}
    received = float(report.get("received_at", 0.0))
    return {
        "mode": "pull", "reported": True, "release": report.get("release", ""),
        "age_seconds": round(now - received, 1), "revision": report.get("applied_revision", ""),
        "publication": report.get("applied_publication", ""),
        "up_to_date": publication is not None and report.get("applied_publication") == publication.get("id"),
        "ready": report.get("ready"), "engaged": report.get("engaged"),
        "last_run": report.get("last_run", {}),
    }


# ---- the server ---------------------------------------------------------------------------


def create_app(edge_root: Path) -> Any:
    """The pull endpoint (a Starlette app): the channel, the kill state, files, reports."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    secret = fleet_secret(edge_root)
    folder = pull_dir(edge_root)

    def publication() -> dict[str, Any]:
        return read_publication(folder)

    def caller(request: Request, node: str | None = None) -> str | None:
        """The node whose token the request carries, when it names a pull node."""
        name = request.headers.get(NODE_HEADER, "")
        if not _NODE_NAME.match(name) or (node is not None and name != node):
            return None
        if name not in publication()["nodes"]:
            return None
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return name if hmac.compare_digest(presented, node_token(secret, name)) else None

    def signed(node: str, data: dict[str, Any]) -> Response:
        body = json.dumps(data, sort_keys=True).encode()
        return Response(body, media_type="application/json",
                        headers={SIGNATURE_HEADER: sign(node_token(secret, node), body)})

    def refused() -> Response:
        return JSONResponse({"error": "unknown node or bad token"}, status_code=401)

    async def get_channel(request: Request) -> Response:
        node = caller(request, request.path_params["node"])
        if node is None:
            return refused()
        return signed(node, channel(publication(), node, kill_state(edge_root)))

    async def get_killswitch(request: Request) -> Response:
        node = caller(request, request.path_params["node"])
        if node is None:
            return refused()
        current = channel(publication(), node, kill_state(edge_root))
        return signed(node, {**current["killswitch"], "revision": current["revision"]})

    async def get_file(request: Request) -> Response:
        if caller(request) is None:
            return refused()
        path = publication()["paths"].get(request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "no such file in the publication"}, status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    async def put_report(request: Request) -> Response:
        node = caller(request, request.path_params["node"])
        if node is None:
            return refused()
        body = await request.body()
        if len(body) > MAX_REPORT_BYTES:
            return JSONResponse({"error": "report too large"}, status_code=413)
        try:
            report = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "the report is not JSON"}, status_code=400)
        if not isinstance(report, dict):
            return JSONResponse({"error": "the report is not a JSON object"}, status_code=400)
        _write_json(folder / "reports" / f"{node}.json",
                    {**report, "node": node, "received_at": time.time()})
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route("/v1/pull/{node}/channel", get_channel),
        Route("/v1/pull/{node}/killswitch", get_killswitch),
        Route("/v1/pull/files/{name}", get_file),
        Route("/v1/pull/{node}/report", put_report, methods=["PUT"]),
    ])


def bind(addresses: list[str], port: int) -> list[socket.socket]:
    sockets = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            raise TargetError(f"cannot listen on {address}:{port} for the pull nodes: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


@dataclass(frozen=True)
class Tls:
    """The endpoint's certificate and key (PEM files). Nodes check the certificate against the
    CA the inventory gives them (``triptyque_pull_ca``), else against their system's CAs."""

    cert: Path
    key: Path

    def check(self) -> Tls:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise TargetError(f"--tls-cert {self.cert} / --tls-key {self.key}: not a certificate and "
                              f"its private key in PEM ({getattr(exc, 'strerror', None) or exc})") from None
        return self


def _server(edge_root: Path, tls: Tls | None) -> Any:
    import uvicorn

    options: dict[str, Any] = {"log_config": None, "access_log": False}
    if tls is not None:
        options.update(ssl_certfile=str(tls.check().cert), ssl_keyfile=str(tls.key))
    return uvicorn.Server(uvicorn.Config(create_app(edge_root), **options))


def serve(edge_root: Path, addresses: list[str], port: int, tls: Tls | None = None) -> None:
    """Serve the pull endpoint until interrupted (``triptyque pull-serve``); HTTPS with ``tls``."""
    server = _server(edge_root, tls)
    server.run(sockets=bind(addresses, port))


@contextlib.contextmanager
def serving(edge_root: Path, addresses: list[str], port: int, tls: Tls | None = None) -> Iterator[None]:
    """The pull endpoint in a thread, for as long as the block runs (tests, drills)."""
    from triptyque.wait import wait_until

    server = _server(edge_root, tls)
    sockets = bind(addresses, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="the pull endpoint to listen")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for sock in sockets:
            sock.close()

