"""Fixtures for the image tests: the gateway and CPU engine images built once per input hash,
a spec copy, a local registry (Debian's docker-registry on 127.0.0.1) started and stopped here
(one per session: the engine's ~1 GB of layers are pushed once).

Everything runs with the project's own container configuration (images/containers.conf,
a storage under .cache/): nothing of the machine's container setup is read or changed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT
from triptyque.images.build import Built, build_gateway
from triptyque.images.engine import build_engine
from triptyque.images.tools import cache_root, environment
from triptyque.spec import DEFAULT_SPEC, load_spec

TOOLS = ("buildah", "skopeo", "podman", "runc", "debootstrap", "docker-registry", "catatonit")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tool(*argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """buildah, skopeo or podman with the project's configuration."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                            env=environment(cache_root()))
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def copy_spec(folder: Path) -> Path:
    """The shipped spec, byte for byte (its placeholders included), with its model beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "service.yaml"
    shutil.copyfile(ROOT / DEFAULT_SPEC, path)
    (folder / "tiny-model").symlink_to(ROOT / "serving" / "tiny-model")
    return path


@pytest.fixture(scope="session")
def image_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("buildah and podman run rootful here: the image tests need root")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run scripts/system-deps.sh as root")


@pytest.fixture(scope="session")
def gateway_image(image_host: None) -> Built:
    """The gateway image of the shipped spec: built on the first run, cached after that."""
    return build_gateway(ROOT, cache_root(), load_spec(ROOT / DEFAULT_SPEC), print)


@pytest.fixture(scope="session")
def engine_image(image_host: None) -> Built:
    """vLLM's CPU build: built on the first run (from the edge bundle's wheelhouse), cached after."""
    return build_engine(ROOT, cache_root(), load_spec(ROOT / DEFAULT_SPEC), print)


@pytest.fixture(scope="session")
def registry(image_host: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docker-registry on the loopback address, with its storage in a temporary folder; stopped
    after the session."""
    tmp_path = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115  # lives as long as the registry
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)


def cpu_profile(raw: dict[str, Any], engine_port: int | None = None, gateway_port: int | None = None) -> None:
    """Set the CPU-only cluster profile in a spec's onprem overlay, as a pilot would write it:
    no GPUs, the local target's tiny model, its CPU engine settings and resources."""
    local = raw["targets"]["local"]
    overlay: dict[str, Any] = {
        "engine": {"load_format": local["engine"]["load_format"], "env": local["engine"]["env"]},
        "resources": local["resources"],
    }
    if engine_port is not None:
        overlay["engine"]["port"] = engine_port
    if gateway_port is not None:
        overlay["gateway"] = {"port": gateway_port}
    raw["targets"]["onprem"] = overlay
    assert overlay["resources"]["gpu_count"] == 0
