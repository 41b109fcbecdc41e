"""The vLLM command line, rendered from the spec (pure: every target uses it)."""

from __future__ import annotations

from triptyque.spec import ServiceSpec

ENTRYPOINT = ["-m", "vllm.entrypoints.openai.api_server"]


def engine_args(spec: ServiceSpec, *, host: str = "127.0.0.1", model: str | None = None) -> list[str]:
    """Arguments after ``python``: the same engine on every target, GPU flags only with a GPU.

    ``model`` overrides where the weights are read from (a path on the node or a
    mounted cache); by default the spec's local folder or hub id.
    """
    local = spec.model_path
    source = model or (str(local) if local else spec.model.source)
    args = [
        *ENTRYPOINT,
        "--model", source,
        "--served-model-name", spec.model.served_name,
        "--host", host,
        "--port", str(spec.engine.port),
        "--max-model-len", str(spec.engine.max_model_len),
        "--dtype", spec.engine.dtype,
        "--load-format", spec.engine.load_format,
    ]
    if local is None and model is None:
        args += ["--revision", spec.model.revision]
    if spec.resources.gpu_count > 0:
        args += [
            "--tensor-parallel-size", str(spec.engine.tensor_parallel_size),
            "--gpu-memory-utilization", str(spec.engine.gpu_memory_utilization),
        ]
    return [*args, *spec.engine.extra_args]
