"""The gateway image: built with buildah from the Containerfile, run with podman as the
rendered pods run it, its SBOM and labels, and the push-and-pull round trip through a
local registry whose digest ``render`` then writes into the manifests."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.utils import canonicalize_name

from tests.images.conftest import copy_spec, free_port, tool
from tests.support import ROOT
from triptyque.gateway.settings import settings_from_spec
from triptyque.images import build_images
from triptyque.images.base import base_rootfs, import_base
from triptyque.images.build import Built, build_gateway, gateway_key, remote_digest, spec_hash
from triptyque.images.requirements import gateway_requirements, read_lock
from triptyque.images.tools import cache_root
from triptyque.k8s.names import RUN_AS
from triptyque.keys import hash_key
from triptyque.spec import DEFAULT_SPEC, load_spec

pytestmark = pytest.mark.images

PLACEHOLDER = "sha256:" + "0" * 64


def triptyque(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triptyque.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=900, check=False)


def test_inputs_unchanged_means_no_rebuild(gateway_image: Built) -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC)
    key, _ = gateway_key(ROOT, spec)
    started = time.monotonic()
    again = build_gateway(ROOT, cache_root(), spec)
    assert again.key == key
    if key == gateway_image.key:
        assert again.cached and again.digest == gateway_image.digest
        assert time.monotonic() - started < 15
    else:  # the package was edited while the tests ran: a new build, as it should be
        assert not again.cached


def test_gateway_runs_non_root_on_a_read_only_root_and_answers_healthz(gateway_image: Built, tmp_path: Path) -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC, target="onprem")
    # File state under /tmp, the only writable path (an emptyDir in the rendered pod).
    admin = secrets.token_hex(16)
    settings = settings_from_spec(spec, upstream_url="http://127.0.0.1:9", state_dir=Path("/tmp/state"),
                                  host="0.0.0.0", extra_admin_keys={"test": hash_key(admin)})
    (tmp_path / "settings.json").write_text(settings.model_dump_json())
    port, name = free_port(), f"tq-gateway-{secrets.token_hex(3)}"
    # No --user: the image's own user must be the rendered one. No tmpfs but /tmp.
    tool("podman", "run", "--detach", "--name", name, "--read-only", "--read-only-tmpfs=false",
         "--tmpfs", "/tmp:rw,size=64m,mode=1777", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
         "--volume", f"{tmp_path / 'settings.json'}:/etc/triptyque/settings.json:ro",
         "--publish", f"127.0.0.1:{port}:{spec.gateway.port}", gateway_image.local)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            running = tool("podman", "inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                logs = tool("podman", "logs", name, check=False)
                pytest.fail(f"the gateway did not answer /healthz:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
            time.sleep(0.3)
        assert tool("podman", "exec", name, "id", "-u").stdout.strip() == str(RUN_AS)
        assert tool("podman", "exec", name, "id", "-g").stdout.strip() == str(RUN_AS)
        # A kill writes the state and the audit log: under /tmp, and nothing else changes on the
        # root filesystem but the settings mount.
        killed = httpx.post(f"http://127.0.0.1:{port}/admin/kill", headers={"Authorization": f"Bearer {admin}"},
                            json={"operator": "test", "reason": "image test"}, timeout=10)
        assert killed.status_code == 200, killed.text
        assert tool("podman", "exec", name, "ls", "/tmp/state").stdout.split()
        changed = {line.split(maxsplit=1)[1] for line in tool("podman", "diff", name).stdout.splitlines()}
        assert changed <= {"/etc", "/etc/triptyque", "/etc/triptyque/settings.json"}, changed
        no_root_write = tool("podman", "exec", name, "touch", "/opt/triptyque/x", check=False)
        assert no_root_write.returncode != 0
    finally:
        tool("podman", "rm", "--force", "--time", "2", name, check=False)


def test_image_holds_python_and_the_gateway_dependencies_only(gateway_image: Built) -> None:
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps(sorted((d.metadata['Name'], d.version) for d in m.distributions())))")
    shown = tool("podman", "run", "--rm", "--read-only", gateway_image.local, "python", "-c", script).stdout
    installed = {(name.lower().replace("_", "-"), version) for name, version in json.loads(shown)}
    wanted = {(name.lower().replace("_", "-"), version) for name, version in gateway_requirements(ROOT)}
    assert installed == wanted | {("triptyque", gateway_image.tag)}
    probe = ("import importlib.util as u, shutil; "
             "print([m for m in ('vllm', 'torch', 'pip', 'setuptools') if u.find_spec(m)], "
             "[c for c in ('gcc', 'cc', 'make', 'git') if shutil.which(c)])")
    found = tool("podman", "run", "--rm", "--read-only", gateway_image.local, "python", "-c", probe).stdout
    assert found.strip() == "[] []", found


def test_sbom_lists_the_locked_packages_with_their_versions(gateway_image: Built) -> None:
    sbom = json.loads(gateway_image.sbom.read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["version"] == gateway_image.digest
    purls = {c["purl"] for c in sbom["components"]}
    lock = read_lock(ROOT / "requirements.lock")
    for name, version in gateway_requirements(ROOT):
        canonical = name.lower().replace("_", "-").replace(".", "-")
        assert lock[canonicalize_name(name)][1] == version
        assert f"pkg:pypi/{canonical}@{version}" in purls
    pypi = [c for c in sbom["components"] if c["purl"].startswith("pkg:pypi/") and c["name"] != "triptyque"]
    assert all(c["hashes"][0]["alg"] == "SHA-256" for c in pypi)
    assert any(p.startswith("pkg:deb/debian/python3.11@") for p in purls)


def test_labels_carry_revision_spec_hash_and_licence(gateway_image: Built) -> None:
    shown = json.loads(tool("skopeo", "inspect", f"oci:{gateway_image.layout}:{gateway_image.tag}").stdout)
    labels = shown["Labels"]
    assert labels["io.triptyque.spec-hash"] == spec_hash(load_spec(ROOT / DEFAULT_SPEC))
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    revision = labels["org.opencontainers.image.revision"]
    # The commit the image was first built from with these inputs: one of this repository's.
    assert subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{revision}^{{commit}}"],
                          check=False).returncode == 0
    manifest = json.loads(tool("skopeo", "inspect", "--raw", f"oci:{gateway_image.layout}:{gateway_image.tag}").stdout)
    assert manifest["annotations"]["org.opencontainers.image.revision"] == revision
    assert shown["Digest"] == gateway_image.digest


def test_render_refuses_the_shipped_placeholder(tmp_path: Path) -> None:
    spec = copy_spec(tmp_path / "spec")
    result = triptyque("render", "onprem", "--spec", str(spec), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "the digest is the zero placeholder" in result.stderr


def test_push_pull_round_trip_gives_the_digest_render_writes(
    gateway_image: Built, engine_image: Built, registry: str, tmp_path: Path
) -> None:
    spec = copy_spec(tmp_path / "spec")
    # The engine's upstream image, served here by the local registry under its tag (any
    # image stands in): `image build` asks the registry for its digest instead of a hand edit.
    engine = f"{registry}/vllm/vllm-openai:v0.32.0"
    tool("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{gateway_image.layout}:{gateway_image.tag}",
         f"docker://{engine}")
    text = spec.read_text().replace("docker.io/vllm/vllm-openai:v0.32.0", engine)
    spec.write_text(text)

    built = triptyque("image", "build", "--spec", str(spec), "--push", registry)
    assert built.returncode == 0, built.stderr + built.stdout
    recorded = yaml.safe_load(spec.read_text())["images"]
    pushed = f"{registry}/triptyque/gateway:{gateway_image.tag}"
    assert recorded["gateway"].startswith(f"{pushed}@sha256:")
    digest = recorded["gateway"].split("@", 1)[1]
    assert f"gateway {digest}" in built.stdout
    shown = json.loads(tool("skopeo", "inspect", "--tls-verify=false", f"docker://{pushed}").stdout)
    assert shown["Digest"] == digest
    assert recorded["engine"].startswith(f"{engine}@sha256:") and not recorded["engine"].endswith(PLACEHOLDER)
    # The CPU engine image too, pushed with its digest unchanged.
    engine_cpu = f"{registry}/triptyque/engine-cpu:{engine_image.tag}"
    assert recorded["engine_cpu"] == f"{engine_cpu}@{engine_image.digest}"
    shown = json.loads(tool("skopeo", "inspect", "--tls-verify=false", f"docker://{engine_cpu}").stdout)
    assert shown["Digest"] == engine_image.digest

    out = tmp_path / "manifests"
    rendered = triptyque("render", "onprem", "--spec", str(spec), "--out", str(out))
    assert rendered.returncode == 0, rendered.stderr
    images = {}
    for path in out.glob("*-deployment-*.yaml"):
        deployment = yaml.safe_load(path.read_text())
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            images[container["name"]] = container["image"]
    assert images["gateway"] == recorded["gateway"]

    # Pull by that digest: the registry serves the same manifest, which podman keeps under it.
    tool("podman", "pull", "--quiet", "--tls-verify=false", images["gateway"], timeout=600)
    shown = tool("podman", "image", "inspect", "--format", "{{json .RepoDigests}}", images["gateway"]).stdout
    assert f"{registry}/triptyque/gateway@{digest}" in json.loads(shown)
    tool("podman", "rmi", images["gateway"], check=False)


def test_build_images_records_into_the_spec_without_touching_the_rest(
    gateway_image: Built, engine_image: Built, tmp_path: Path
) -> None:
    spec = copy_spec(tmp_path / "spec")
    before = spec.read_text()
    outcome = build_images(spec, ROOT)
    after = spec.read_text()
    built, engine = outcome.built
    assert outcome.recorded["gateway"] == built.reference
    assert outcome.recorded["engine_cpu"] == engine.reference
    if built.key == gateway_image.key:
        assert built.cached and built.reference == gateway_image.reference
    assert engine.cached and engine.reference == engine_image.reference
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert [b.strip() for _, b in changed] == [f"gateway: {built.reference}", f"engine_cpu: {engine.reference}"]
    # The upstream engine cannot be asked here: its placeholder stays, and the note says so.
    assert any("images.engine keeps its placeholder" in note for note in outcome.notes) or "engine" in outcome.recorded


def test_build_from_a_registry_base_as_a_team_with_a_registry_would(
    gateway_image: Built, registry: str, tmp_path: Path
) -> None:
    """`image build --base IMAGE@DIGEST`: FROM a base pulled from a registry, as with an official
    python:3.11-slim-bookworm. None can be pulled here, so the Debian base made here stands
    in for it, served under that name by the local registry."""
    base = gateway_image.base
    import_base(cache_root(), base_rootfs(cache_root()))  # back in the storage if it was emptied
    layout = cache_root() / "images" / f"{base.rsplit(':', 1)[1]}-oci"  # kept: the same digest every run
    if not (layout / "index.json").exists():
        tool("skopeo", "copy", "--quiet", f"containers-storage:{base}", f"oci:{layout}:base", timeout=600)
    slim = f"{registry}/library/python:3.11-slim-bookworm"
    tool("skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:base",
         f"docker://{slim}", timeout=600)
    pinned = f"{slim}@{remote_digest(cache_root(), slim)}"

    unpinned = triptyque("image", "build", "--spec", str(copy_spec(tmp_path / "spec")), "--base", slim)
    assert unpinned.returncode == 1 and "pin the base image by digest" in unpinned.stderr

    built = build_gateway(ROOT, cache_root(), load_spec(ROOT / DEFAULT_SPEC), base=pinned)
    assert built.key != gateway_image.key
    labels = json.loads(tool("skopeo", "inspect", f"oci:{built.layout}:{built.tag}").stdout)["Labels"]
    assert labels["org.opencontainers.image.base.digest"] == pinned.split("@", 1)[1]
    probe = "import os, triptyque.gateway.app, kubernetes; print(os.getuid(), os.getgid())"
    shown = tool("podman", "run", "--rm", "--read-only", built.local, "python", "-c", probe).stdout
    assert shown.split() == [str(RUN_AS), str(RUN_AS)]
    tool("buildah", "rmi", pinned, check=False)  # the pulled base; the image built on it keeps its layers
