"""The rendered onprem gateway workload, run for real in a pod by ``podman kube play``.

`triptyque image build --push` to the local registry, `triptyque render onprem`, then the
rendered gateway Deployment and its settings ConfigMap are played as rendered (image by
digest from the registry, security contexts, volumes, command, ports), with the cluster
kill-switch backend of the rendered settings talking to an API server double over TLS.

Adaptations, each because podman cannot express the Kubernetes feature (and only these):
- ``replicas: 1``: podman plays one pod per Deployment;
- ``hostNetwork: true``: the pod reaches the API server double on the host's loopback
  (there is no cluster network, Service or DNS); the container's ``ports`` go, as podman
  turns them into port mappings that it refuses on the host network (the gateway listens
  on the port of its rendered settings all the same);
- the service account: podman projects no token, so ``KUBERNETES_SERVICE_HOST/PORT`` are
  set and a hostPath volume holds the token, the double's CA and the namespace at the
  path the kubelet uses;
- the probes: podman turns an httpGet probe into a ``curl`` run inside the container by a
  systemd timer (no curl in the image, no systemd here), so the test requests the rendered
  probe path and port from the host instead.

What it does not show: the engine (no CPU engine image yet), a real API server's RBAC,
admission and scheduling, NetworkPolicies, the Service and the Ingress.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from tests.images.conftest import copy_spec, tool
from tests.images.test_images import triptyque
from tests.support.fake_apiserver import TOKEN, FakeApiServer
from triptyque.images.build import Built
from triptyque.k8s.names import RUN_AS
from triptyque.keys import hash_key

pytestmark = pytest.mark.images

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class TlsFakeApiServer(FakeApiServer):
    """The FAKE API server behind TLS, as the official client's in-cluster configuration
    insists on https."""

    certfile: str = ""
    keyfile: str = ""

    def start(self) -> FakeApiServer:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=0, log_level="error", lifespan="off",
                                timeout_graceful_shutdown=1, ssl_certfile=self.certfile, ssl_keyfile=self.keyfile)
        self._server = server = uvicorn.Server(config)

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(server.serve())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="fake-apiserver-tls", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the fake API server did not start"
            time.sleep(0.01)
        self.url = f"https://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        return self


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _objects(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(out.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        found[(manifest["kind"], manifest["metadata"]["name"])] = manifest
    return found


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[TlsFakeApiServer, Path]]:
    """The double with a self-signed certificate for 127.0.0.1, and the service-account folder."""
    account = tmp_path / "serviceaccount"
    account.mkdir(mode=0o755)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=fake-apiserver", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "tls.key"), "-out", str(account / "ca.crt")],
                   check=True, capture_output=True)
    (account / "token").write_text(TOKEN)
    (account / "namespace").write_text("triptyque")
    for path in account.iterdir():
        path.chmod(0o644)
    server = TlsFakeApiServer(namespace="triptyque")
    server.certfile, server.keyfile = str(account / "ca.crt"), str(tmp_path / "tls.key")
    server.start()
    try:
        yield server, account
    finally:
        server.stop()


def test_rendered_gateway_runs_in_a_pod_and_its_kill_switch_works(
    gateway_image: Built, registry: str, api_server: tuple[TlsFakeApiServer, Path], tmp_path: Path
) -> None:
    server, account = api_server
    # A fixed key: the spec is an input of the image (its hash is a label), so the same spec
    # finds the image built by the previous run.
    admin = "tq-image-test-admin-key"
    spec = copy_spec(tmp_path / "spec")
    text = spec.read_text().replace("  admin_keys: {}", f"  admin_keys:\n    test:\n      sha256: {hash_key(admin)}")
    # The engine is not run here; its digest only has to be real-looking for render.
    spec.write_text(text.replace("v0.32.0@sha256:" + "0" * 64, "v0.32.0@sha256:" + "1" * 64))
    built = triptyque("image", "build", "--spec", str(spec), "--push", registry)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "manifests"
    rendered = triptyque("render", "onprem", "--spec", str(spec), "--out", str(out))
    assert rendered.returncode == 0, rendered.stderr
    objects = _objects(out)
    deployment = objects[("Deployment", "triptyque-llm-gateway")]
    settings_map = objects[("ConfigMap", "triptyque-llm-gateway-settings")]
    killswitch = objects[("ConfigMap", "triptyque-llm-killswitch")]
    settings = json.loads(settings_map["data"]["settings.json"])
    assert settings["state_backend"] == "kubernetes"
    port = settings["port"]
    if not _port_free(port):
        pytest.skip(f"port {port} (the rendered gateway port, on the host network here) is taken")

    # The API server double holds the rendered kill-switch ConfigMap.
    server.allowed_configmaps.add(killswitch["metadata"]["name"])
    server.create_configmap(killswitch["metadata"]["name"], killswitch.get("data"))

    # The adaptations listed in the module's docstring, and nothing else.
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith(f"{registry}/triptyque/gateway:") and "@sha256:" in container["image"]
    deployment["spec"]["replicas"] = 1
    pod["hostNetwork"] = True
    named_ports = {p["name"]: p["containerPort"] for p in container.pop("ports")}
    assert named_ports == {"http": port}
    host, api_port = server.url.removeprefix("https://").split(":")
    container["env"] += [{"name": "KUBERNETES_SERVICE_HOST", "value": host},
                         {"name": "KUBERNETES_SERVICE_PORT", "value": api_port}]
    pod["volumes"].append({"name": "serviceaccount", "hostPath": {"path": str(account), "type": "Directory"}})
    container["volumeMounts"].append({"name": "serviceaccount", "mountPath": SA_DIR, "readOnly": True})
    play = tmp_path / "play.yaml"
    play.write_text(yaml.safe_dump_all([settings_map, deployment], sort_keys=False))

    tool("podman", "kube", "play", "--tls-verify=false", str(play), timeout=600)
    try:
        name = tool("podman", "ps", "--filter", "label=io.kubernetes.cri-o.ContainerName=gateway",
                    "--format", "{{.Names}}", check=False).stdout.split() or \
            [n for n in tool("podman", "ps", "--format", "{{.Names}}").stdout.split() if n.endswith("-gateway")]
        assert name, tool("podman", "ps", "-a").stdout
        container_name = name[0]
        probe = container["readinessProbe"]["httpGet"]
        assert named_ports[probe["port"]] == port
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + probe["path"], timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                logs = tool("podman", "logs", container_name, check=False)
                pytest.fail(f"the rendered readiness probe never passed:\n{logs.stderr[-4000:]}")
            time.sleep(0.3)

        # As rendered: the non-root user, a read-only root, no capabilities.
        assert tool("podman", "exec", container_name, "id", "-u").stdout.strip() == str(RUN_AS)
        shown = json.loads(tool("podman", "inspect", container_name).stdout)[0]
        assert shown["HostConfig"]["ReadonlyRootfs"] is True
        assert not shown["EffectiveCaps"]
        assert tool("podman", "exec", container_name, "touch", "/x", check=False).returncode != 0

        # The kill switch engages and resumes through the cluster backend (the double's ConfigMap).
        headers = {"Authorization": f"Bearer {admin}"}
        killed = httpx.post(base + "/admin/kill", headers=headers, json={"operator": "test", "reason": "pod test"},
                            timeout=15)
        assert killed.status_code == 200, killed.text
        state = json.loads(server.data(killswitch["metadata"]["name"])["state.json"])
        assert state["engaged"] is True and state["reason"] == "pod test"
        assert httpx.get(base + "/readyz", timeout=5).status_code == 503
        resumed = httpx.post(base + "/admin/resume", headers=headers, json={"operator": "test", "reason": "done"},
                             timeout=15)
        assert resumed.status_code == 200, resumed.text
        state = json.loads(server.data(killswitch["metadata"]["name"])["state.json"])
        assert state["engaged"] is False
    finally:
        down = tool("podman", "kube", "down", str(play), check=False, timeout=120)
        tool("podman", "rmi", container["image"], check=False)
    assert down.returncode == 0, down.stderr
    left = tool("podman", "ps", "--all", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in left if "triptyque-llm-gateway" in n], left
    assert "triptyque-llm-gateway-pod-0" not in tool("podman", "pod", "ps", "--format", "{{.Name}}").stdout
    assert os.path.isdir(account)  # the hostPath is the test's own folder, left to tmp_path
