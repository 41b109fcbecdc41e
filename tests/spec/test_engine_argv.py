"""One vLLM command line: local, edge and Kubernetes run what ``triptyque.engine`` builds,
and differ only in the listening host and port, the model path and the device flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import ROOT
from triptyque.edge.render import NODE_MODEL_DIR, render_vars
from triptyque.engine import DEVICES, ENTRYPOINT, device_flags, engine_args
from triptyque.k8s.config import load_stack_config
from triptyque.k8s.engine import engine_deployment, model_files, model_files_name
from triptyque.k8s.render import names_for
from triptyque.spec import ServiceSpec, load_spec

SPEC = ROOT / "serving" / "service.yaml"
# Flags whose value is allowed to differ between targets, and why.
PER_TARGET = {"--host", "--port", "--model"}


def _pairs(argv: list[str], spec: ServiceSpec, device: str) -> dict[str, str]:
    flags = device_flags(spec, device)  # type: ignore[arg-type]
    rest = [a for a in argv[len(ENTRYPOINT):] if a not in flags]
    assert argv[:len(ENTRYPOINT)] == ENTRYPOINT
    return {k: v for k, v in zip(rest[::2], rest[1::2], strict=True) if k not in PER_TARGET}


def _local(spec: ServiceSpec) -> list[str]:
    return engine_args(spec)


def _edge(spec: ServiceSpec, device: str) -> list[str]:
    from triptyque.edge.bundle import Manifest

    manifest = Manifest(format=1, id="b" * 16, service=spec.name, engine_version=spec.engine.version,
                        engine_package="vllm", devices=(device,),  # type: ignore[arg-type]
                        python="3.11", platform="debian-12-amd64", model_served_name=spec.model.served_name,
                        builder_version="0", components={})
    rendered = render_vars(spec, manifest, bundle_dir=Path("/srv"), api_key_hashes={}, admin_key_hashes={})
    argv: list[str] = rendered["triptyque_engine_args"][device]
    return argv


def _kubernetes(spec: ServiceSpec) -> list[str]:
    config = load_stack_config(ROOT, "onprem")
    files = model_files(spec)
    names = names_for(spec, config)
    deployment = engine_deployment(spec, config, names, "vllm@sha256:" + "1" * 64,
                                   model_files_name(names, files) if files else None)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3"]
    argv: list[str] = container["args"]
    return argv


@pytest.mark.parametrize("device", DEVICES)
def test_local_edge_and_kubernetes_differ_only_in_host_port_model_path_and_device_flags(device: str) -> None:
    spec = load_spec(SPEC, target="local")
    resources = spec.resources.model_copy(update={"gpu_count": 1, "gpu_type": "nvidia-l4"})
    gpu = spec.model_copy(update={"resources": resources})
    chosen = gpu if device == "gpu" else spec
    argvs = {"local": _local(chosen), "edge": _edge(chosen, device), "kubernetes": _kubernetes(chosen)}
    reference = _pairs(argvs["local"], chosen, device)
    for where, argv in argvs.items():
        assert _pairs(argv, chosen, device) == reference, where
        for flag in device_flags(chosen, device):  # type: ignore[arg-type]
            assert flag in argv, (where, flag)
    assert argvs["edge"][argvs["edge"].index("--model") + 1] == NODE_MODEL_DIR
    assert argvs["kubernetes"][argvs["kubernetes"].index("--host") + 1] == "0.0.0.0"
    assert argvs["local"][argvs["local"].index("--host") + 1] == "127.0.0.1"


def test_the_cpu_build_runs_eager_and_the_gpu_build_gets_its_parallelism_flags() -> None:
    spec = load_spec(SPEC, target="local")
    assert device_flags(spec, "cpu") == ["--enforce-eager"]
    gpu = device_flags(spec, "gpu")
    assert gpu[gpu.index("--tensor-parallel-size") + 1] == str(spec.engine.tensor_parallel_size)
    assert "--enforce-eager" not in gpu
