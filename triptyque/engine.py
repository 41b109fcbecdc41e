"""The vLLM command line, rendered from the spec: the only builder of it.

Every target runs ``python`` followed by ``engine_args(...)``: the local target on this
machine, the edge role on each node (it receives the rendered argv per device), and
the Kubernetes engine container. They differ only in the listening host and port, where
the model is read from, and the flags of the engine build (``DEVICE_FLAGS``).
"""

from __future__ import annotations

from typing import Literal

from triptyque.spec import ServiceSpec

ENTRYPOINT = ["-m", "vllm.entrypoints.openai.api_server"]
Device = Literal["cpu", "gpu"]
DEVICES: tuple[Device, ...] = ("cpu", "gpu")


def default_device(spec: ServiceSpec) -> Device:
    return "gpu" if spec.resources.gpu_count > 0 else "cpu"


def device_flags(spec: ServiceSpec, device: Device) -> list[str]:
    """What each engine build needs whatever else the spec says."""
    if device == "gpu":
        return ["--tensor-parallel-size", str(spec.engine.tensor_parallel_size),
                "--gpu-memory-utilization", str(spec.engine.gpu_memory_utilization)]
    # vLLM's CPU build compiles nothing at run time in eager mode, so nodes need no compiler.
    return ["--enforce-eager"]


def engine_args(
    spec: ServiceSpec,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    model: str | None = None,
    device: Device | None = None,
) -> list[str]:
    """Arguments after ``python``.

    ``model`` is where the weights are read from on that target (a path on the node or a
    mounted folder); by default the spec's local folder, or its hub id at its revision.
    ``device`` defaults to the spec's (gpu when it asks for GPUs).
    """
    local = spec.model_path
    source = model or (str(local) if local else spec.model.source)
    args = [
        *ENTRYPOINT,
        "--model", source,
        "--served-model-name", spec.model.served_name,
        "--host", host,
        "--port", str(spec.engine.port if port is None else port),
        "--max-model-len", str(spec.engine.max_model_len),
        "--dtype", spec.engine.dtype,
        "--load-format", spec.engine.load_format,
    ]
    if local is None and model is None:
        args += ["--revision", spec.model.revision]
    return [*args, *device_flags(spec, device or default_device(spec)), *spec.engine.extra_args]
