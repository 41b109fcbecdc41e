"""The rendered onprem CPU-only cluster profile, run for real in pods by ``podman kube play``.

`triptyque image build --push` to the local registry (both images: the gateway and vLLM's CPU
build), `triptyque render onprem` on the spec as `image build` left it (its onprem overlay set
to the CPU profile: ``resources.gpu_count: 0``, the local target's tiny model and CPU engine
settings), then the rendered engine and gateway workloads are played as rendered: images by
digest from the registry, the model-files and settings ConfigMaps, the model-cache claim,
emptyDirs, security contexts, commands, arguments and environment. The engine becomes ready,
vLLM's CPU build serves a real completion through the gateway's pod, and the kill switch
engages and resumes through the rendered cluster backend (the kubernetes ConfigMap backend,
as rendered: the file backend is not what the onprem target runs) against an API server
double over TLS.

Adaptations, each because podman cannot express the Kubernetes feature (and only these):
- ``replicas: 1`` on the gateway: podman plays one pod per Deployment (the engine's sets no
  replicas, as rendered: the kill switch owns them);
- ``hostNetwork: true`` on both pods: there is no cluster network, so the gateway reaches the
  engine and the API server double on the host's loopback; the containers' ``ports`` go, as
  podman turns them into port mappings that it refuses on the host network (each process
  listens on its rendered port all the same). The test picks free ports for the engine and
  the gateway (``targets.onprem`` of its spec, not an adaptation) and skips when the rendered
  metrics port is taken;
- the engine Service's name: there is no cluster DNS, so the gateway container gets an
  /etc/hosts (a hostPath file) where the name in the rendered upstream URL is the host's
  loopback (podman 4.3 ignores a pod's ``hostAliases`` on the host network);
- the gateway's service account: podman projects no token, so ``KUBERNETES_SERVICE_HOST/PORT``
  are set and a hostPath volume holds the token, the double's CA and the namespace at the
  path the kubelet uses;
- the probes: podman turns an httpGet probe into a ``curl`` run inside the container by a
  systemd timer (no curl in the images, no systemd here), so the test requests each rendered
  probe's path on its named port from the host instead;
- the emptyDirs: podman 4.3 turns an emptyDir into a volume named after it, shared by every
  pod that names its volume alike (both pods' ``tmp``), root-owned, on disk even for
  ``medium: Memory`` (vLLM, as uid 10001, then cannot create its shared-memory ring buffer
  in /dev/shm); so each becomes a hostPath folder of its own, mode 0777 as a kubelet makes
  an emptyDir, on the host's tmpfs (/dev/shm) for ``medium: Memory``; ``sizeLimit`` is not
  enforced;
- cleaning up: podman's own mapping makes a volume of the model-cache claim's name (owned
  by the pod's user; no storage class or provisioner) and one per ConfigMap; podman 4.3's
  ``kube down`` removes the pods and containers but keeps those volumes (as a cluster keeps
  a PVC and ConfigMaps when a Deployment goes), so the test removes them by name, then
  checks that no pod, container or volume of the service is left.

Sources beside what was observed here with podman 4.3: a kubelet's emptyDir is mode 0777
(`ls -l` in a pod, github.com/andyzhangx/demo linux/emptydir/README.md); podman maps a
PersistentVolumeClaim to a named volume of the claim's name
(github.com/containers/podman/issues/7626); kube YAML had no way to add /etc/hosts entries
before hostAliases support (github.com/containers/podman/issues/7442), which 4.3 still skips
on the host network.

What it does not show: a real API server's RBAC, admission (the namespace's restricted Pod
Security level) and scheduling, resource limits enforced by a kubelet, NetworkPolicies,
Services and the Ingress, the ServiceMonitors, and the GPU profile (vLLM's upstream image).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from tests.images.conftest import copy_spec, cpu_profile, free_port, tool
from tests.images.test_images import triptyque
from tests.support.fake_apiserver import TOKEN, FakeApiServer
from triptyque.images.build import Built
from triptyque.k8s.names import RUN_AS
from triptyque.keys import hash_key
from triptyque.wait import wait_until

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


def _cpu_profile_spec(folder: Path, api_key: str, admin_key: str, engine_port: int, gateway_port: int) -> Path:
    """The shipped spec with the CPU-only cluster profile in its onprem overlay, as a pilot
    would write it: no GPUs, the tiny model and the CPU engine settings of the local target.

    The keys are fixed and go in the base spec (an input of the gateway image, whose label
    carries its hash), so runs after the first find the image built; the ports go in the
    overlay (not an image input) and are free ones, as the pods share the host's network."""
    spec = copy_spec(folder)
    raw = yaml.safe_load(spec.read_text())
    raw["gateway"]["api_keys"] = {"pod-test": {"sha256": hash_key(api_key)}}
    raw["gateway"]["admin_keys"] = {"pod-test": {"sha256": hash_key(admin_key)}}
    cpu_profile(raw, engine_port, gateway_port)
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    return spec


def _completion(base: str, key: str, model: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "prompt": "The kill switch", "max_tokens": 4, "temperature": 0},
                      timeout=120)


def _container(component: str) -> str:
    """The name podman gave the container of the played Deployment ``component``."""
    names = tool("podman", "ps", "--format", "{{.Names}}").stdout.split()
    found = [n for n in names if n.startswith(f"triptyque-llm-{component}-pod-")]
    assert len(found) == 1, tool("podman", "ps", "-a").stdout
    return found[0]


def _empty_dirs_on_the_host(pod: dict[str, Any], name: str, folder: Path, memory: Path) -> None:
    """Each emptyDir becomes a hostPath folder of its own, made here as the kubelet makes an
    emptyDir (mode 0777); medium: Memory ones on the host's tmpfs (/dev/shm), as a kubelet does."""
    for volume in pod["volumes"]:
        empty = volume.pop("emptyDir", None)
        if empty is None:
            continue
        path = (memory if empty.get("medium") == "Memory" else folder) / f"{name}-{volume['name']}"
        path.mkdir(parents=True)
        path.chmod(0o777)
        volume["hostPath"] = {"path": str(path), "type": "Directory"}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.TransportError:
        return False


def test_rendered_cpu_profile_runs_in_pods_serves_a_completion_and_its_kill_switch_works(
    gateway_image: Built, registry: str, api_server: tuple[TlsFakeApiServer, Path], tmp_path: Path
) -> None:
    server, account = api_server
    api_key, admin = "tq-image-test-api-key", "tq-image-test-admin-key"
    engine_port, gateway_port = free_port(), free_port()
    spec = _cpu_profile_spec(tmp_path / "spec", api_key, admin, engine_port, gateway_port)

    # `image build --push`, then `render onprem` on the spec as `image build` left it: no hand edit.
    built = triptyque("image", "build", "--spec", str(spec), "--push", registry)
    assert built.returncode == 0, built.stderr + built.stdout
    recorded = yaml.safe_load(spec.read_text())["images"]
    for component, field in (("gateway", "gateway"), ("engine-cpu", "engine_cpu")):
        assert recorded[field].startswith(f"{registry}/triptyque/{component}:")
        assert f"{component} {recorded[field].split('@', 1)[1]}" in built.stdout
    out = tmp_path / "manifests"
    rendered = triptyque("render", "onprem", "--spec", str(spec), "--out", str(out))
    assert rendered.returncode == 0, rendered.stderr
    objects = _objects(out)
    engine = objects[("Deployment", "triptyque-llm-engine")]
    gateway = objects[("Deployment", "triptyque-llm-gateway")]
    settings_map = objects[("ConfigMap", "triptyque-llm-gateway-settings")]
    killswitch = objects[("ConfigMap", "triptyque-llm-killswitch")]
    (model_map,) = [o for (kind, name), o in objects.items()
                    if kind == "ConfigMap" and name.startswith("triptyque-llm-model-files-")]
    cache_claim = objects[("PersistentVolumeClaim", "triptyque-llm-model-cache")]
    settings = json.loads(settings_map["data"]["settings.json"])
    assert settings["state_backend"] == "kubernetes"
    # The key's hash is what the rendered objects carry (no object holds a key itself).
    assert settings["api_keys"]["pod-test"] == hash_key(api_key)
    metrics_port = settings["metrics_port"]
    if not _port_free(metrics_port):
        pytest.skip(f"port {metrics_port} (the rendered metrics port, on the host network here) is taken")

    # The CPU profile as rendered: vLLM's CPU build by digest, no GPU anywhere.
    engine_pod = engine["spec"]["template"]["spec"]
    vllm = engine_pod["containers"][0]
    assert vllm["image"] == recorded["engine_cpu"]
    assert "nvidia.com/gpu" not in vllm["resources"]["limits"]
    assert "nodeSelector" not in engine_pod and "tolerations" not in engine_pod
    assert "--enforce-eager" in vllm["args"]
    gateway_pod = gateway["spec"]["template"]["spec"]
    container = gateway_pod["containers"][0]
    assert container["image"] == recorded["gateway"]

    # The API server double holds the rendered kill-switch ConfigMap.
    server.allowed_configmaps.add(killswitch["metadata"]["name"])
    server.create_configmap(killswitch["metadata"]["name"], killswitch.get("data"))

    # The adaptations listed in the module's docstring, and nothing else.
    gateway["spec"]["replicas"] = 1
    ports: dict[str, dict[str, int]] = {}
    for name, pod in (("engine", engine_pod), ("gateway", gateway_pod)):
        pod["hostNetwork"] = True
        ports[name] = {p["name"]: p["containerPort"] for p in pod["containers"][0].pop("ports")}
    assert ports == {"engine": {"http": engine_port}, "gateway": {"http": gateway_port, "metrics": metrics_port}}
    upstream = httpx.URL(settings["upstream_url"])
    assert upstream.port == engine_port
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {upstream.host}\n")
    hosts.chmod(0o644)
    gateway_pod["volumes"].append({"name": "hosts", "hostPath": {"path": str(hosts), "type": "File"}})
    container["volumeMounts"].append({"name": "hosts", "mountPath": "/etc/hosts", "readOnly": True})
    host, api_port = server.url.removeprefix("https://").split(":")
    container["env"] += [{"name": "KUBERNETES_SERVICE_HOST", "value": host},
                         {"name": "KUBERNETES_SERVICE_PORT", "value": api_port}]
    gateway_pod["volumes"].append({"name": "serviceaccount", "hostPath": {"path": str(account), "type": "Directory"}})
    container["volumeMounts"].append({"name": "serviceaccount", "mountPath": SA_DIR, "readOnly": True})
    memory = Path("/dev/shm") / f"triptyque-kube-play-{os.getpid()}-{time.monotonic_ns()}"
    for name, pod in (("engine", engine_pod), ("gateway", gateway_pod)):
        _empty_dirs_on_the_host(pod, name, tmp_path / "emptydirs", memory)
    play = tmp_path / "play.yaml"
    play.write_text(yaml.safe_dump_all([cache_claim, model_map, engine, settings_map, gateway], sort_keys=False))

    started = time.monotonic()
    try:
        tool("podman", "kube", "play", "--tls-verify=false", str(play), timeout=900)
        engine_name, gateway_name = _container("engine"), _container("gateway")

        def died() -> str | None:
            """Why the engine will not come up: it exited (podman then restarts it, as a kubelet would)."""
            state = tool("podman", "inspect", "--format", "{{.State.Status}} {{.RestartCount}}", engine_name,
                         check=False).stdout.split()
            if state[:2] == ["running", "0"]:
                return None
            logs = tool("podman", "logs", engine_name, check=False)
            return f"the engine container is {' restarts '.join(state)}:\n{(logs.stdout + logs.stderr)[-3000:]}"

        # The rendered probes' paths answer on their named ports (podman would run them with curl
        # inside the images, which have none; the test requests them from the host instead).
        probe = vllm["startupProbe"]
        budget = probe["periodSeconds"] * probe["failureThreshold"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            url = "http://127.0.0.1:{}{}".format(ports["engine"][vllm[kind]["httpGet"]["port"]],
                                                 vllm[kind]["httpGet"]["path"])
            wait_until(partial(_answers, url), timeout=budget, interval=1, what=f"the engine's {kind}", abort=died)
        engine_ready = time.monotonic() - started
        get = container["readinessProbe"]["httpGet"]
        base = f"http://127.0.0.1:{ports['gateway'][get['port']]}"
        wait_until(partial(_answers, base + get["path"]), timeout=60, interval=0.3,
                   what="the gateway's readinessProbe")

        # As rendered: both run as the non-root user, on a read-only root, with no capabilities.
        for name in (engine_name, gateway_name):
            assert tool("podman", "exec", name, "id", "-u").stdout.strip() == str(RUN_AS)
            shown = json.loads(tool("podman", "inspect", name).stdout)[0]
            assert shown["HostConfig"]["ReadonlyRootfs"] is True
            assert not shown["EffectiveCaps"]
            assert tool("podman", "exec", name, "touch", "/x", check=False).returncode != 0

        # A real completion, generated by vLLM's CPU build in its pod, through the gateway's pod.
        served = _completion(base, api_key, settings["served_model"])
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["text"], served.text
        assert _completion(base, "not-a-key", settings["served_model"]).status_code == 401

        # The kill switch engages and resumes through the cluster backend (the double's ConfigMap).
        headers = {"Authorization": f"Bearer {admin}"}
        killed = httpx.post(base + "/admin/kill", headers=headers, json={"operator": "test", "reason": "pod test"},
                            timeout=15)
        assert killed.status_code == 200, killed.text
        state = json.loads(server.data(killswitch["metadata"]["name"])["state.json"])
        assert state["engaged"] is True and state["reason"] == "pod test"
        assert httpx.get(base + "/readyz", timeout=5).status_code == 503
        refused = _completion(base, api_key, settings["served_model"])
        assert refused.status_code == 503, refused.text
        resumed = httpx.post(base + "/admin/resume", headers=headers, json={"operator": "test", "reason": "done"},
                             timeout=15)
        assert resumed.status_code == 200, resumed.text
        assert json.loads(server.data(killswitch["metadata"]["name"])["state.json"])["engaged"] is False
        again = _completion(base, api_key, settings["served_model"])
        assert again.status_code == 200, again.text
        print(f"engine pod ready {engine_ready:.0f} s after `podman kube play`")
    finally:
        down = tool("podman", "kube", "down", str(play), check=False, timeout=300)
        # podman 4.3's `kube down` keeps the volumes it made for the claim and the ConfigMaps (as a
        # cluster keeps a PVC and ConfigMaps when a Deployment goes): removed here, by their names.
        made = [cache_claim["spec"].get("volumeName") or cache_claim["metadata"]["name"],
                model_map["metadata"]["name"], settings_map["metadata"]["name"]]
        removed = tool("podman", "volume", "rm", *made, check=False)
        for image in (container["image"], vllm["image"]):
            tool("podman", "rmi", image, check=False)
        shutil.rmtree(memory, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert removed.returncode == 0, removed.stderr
    left = tool("podman", "ps", "--all", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in left if n.startswith("triptyque-llm-")], left
    assert "triptyque-llm-" not in tool("podman", "pod", "ps", "--format", "{{.Name}}").stdout
    volumes = tool("podman", "volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if v.startswith("triptyque-llm-")], volumes
    assert os.path.isdir(account)  # the hostPath is the test's own folder, left to tmp_path
