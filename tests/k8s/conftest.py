"""Fixtures for the renderer, the manifests' validation and the cluster kill-switch backend."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT as REPO
from tests.support.fake_apiserver import TOKEN, FakeApiServer
from triptyque.gateway import kube
from triptyque.k8s.config import StackConfig, load_stack_config
from triptyque.k8s.render import render
from triptyque.keys import hash_key
from triptyque.spec import ServiceSpec, load_spec

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
ENGINE_IMAGE = "docker.io/vllm/vllm-openai:v0.32.0@sha256:" + "1" * 64
GATEWAY_IMAGE = "ghcr.io/triptyque/gateway:0.1.0@sha256:" + "2" * 64
API_KEY, ADMIN_KEY = "tq-test-api-key", "tq-test-admin-key"


def write_spec(folder: Path, **changes: Any) -> Path:
    """The shipped spec with test digests and keys, the model folder given absolutely."""
    raw = yaml.safe_load((REPO / "serving" / "service.yaml").read_text(encoding="utf-8"))
    raw["images"] = {"engine": ENGINE_IMAGE, "gateway": GATEWAY_IMAGE}
    raw["gateway"]["api_keys"] = {"app": {"sha256": hash_key(API_KEY)}}
    raw["gateway"]["admin_keys"] = {"ops": {"sha256": hash_key(ADMIN_KEY)}}
    raw["model"]["source"] = str(REPO / "serving" / "tiny-model")
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "service.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec"))


def stack(name: str, spec_file: Path, **changes: Any) -> StackConfig:
    """An example stack file of the repository, pointed at the test spec."""
    return load_stack_config(REPO, name).model_copy(update={"spec": spec_file, **changes})


def spec_for(config: StackConfig) -> ServiceSpec:
    return load_spec(config.spec, config.target)


@pytest.fixture(scope="session")
def rendered(spec_file: Path) -> dict[str, list[dict[str, Any]]]:
    """Every object of both Kubernetes example stacks."""
    out = {}
    for name in ("onprem", "cloud"):
        config = stack(name, spec_file)
        out[name] = render(spec_for(config), config)
    return out


@pytest.fixture(scope="session")
def checkov() -> Path:
    if not CHECKOV.exists():
        subprocess.run(["bash", str(REPO / "tests" / "k8s" / "setup_checkov.sh")], check=True)
    return CHECKOV


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    """A FAKE API server (see its module) holding the example stack's kill-switch ConfigMap."""
    server = FakeApiServer(namespace="triptyque", allowed_configmaps={"triptyque-llm-killswitch"})
    server.create_configmap("triptyque-llm-killswitch")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connection(fake_api: FakeApiServer) -> Any:
    """The official client's configuration for the fake server."""
    return kube.for_server(fake_api.url, TOKEN)
