"""How many accelerators one model needs on one device type, and what a replica serves. Pure.

A replica of the engine holds the weights (parameters x bytes per parameter, plus a
runtime overhead) and a KV cache in ``n`` devices of one machine (tensor parallel,
``n`` a power of two up to the devices one machine holds), each usable up to vLLM's
``gpu_memory_utilization``. It must hold at least one full context (vLLM refuses to
start otherwise); the rest of the KV cache sets how many average requests it runs at
once, capped by the batch size of the throughput benchmark.

Throughput: decoding reads every weight once per step, so a replica's tokens/s is the
benchmark's (a reference model of known weight size on one device) x n x reference
weights / model weights, never above the benchmark per device (a smaller model is not
assumed faster than measured). A device type that cannot hold the model gets a reason,
not a price.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from triptyque.burden.scenario import Model

TENSOR_PARALLEL = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Device:
    """One accelerator type as the model sees it."""

    name: str
    memory_gb: float
    tokens_per_second: float  # the benchmark model's output tokens/s on one device
    reference_weights_gb: float  # the benchmark model's weights
    max_concurrency: float  # the benchmark's requests in flight per device
    per_machine: int  # devices one machine (server, node, site device) holds


@dataclass(frozen=True)
class Fit:
    ok: bool
    devices_per_replica: int
    need_gb: float
    usable_gb: float
    requests_per_replica: int
    tokens_per_second_per_replica: float
    formula: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(model: Model, device: Device, *, utilisation: float, overhead: float) -> Fit:
    """The smallest tensor-parallel group of ``device`` that serves ``model``, or why none does."""
    weights = model.weights_gb * (1 + overhead)
    context_gb = model.context_tokens * model.kv_cache_bytes_per_token / 1e9
    request_gb = model.average_sequence_tokens * model.kv_cache_bytes_per_token / 1e9
    need = weights + context_gb
    for n in (t for t in TENSOR_PARALLEL if t <= device.per_machine):
        usable = n * device.memory_gb * utilisation
        if usable >= need:
            requests = int(min((usable - weights) // request_gb, device.max_concurrency * n))
            ratio = min(1.0, device.reference_weights_gb / model.weights_gb)
            tps = device.tokens_per_second * n * ratio
            return Fit(True, n, need, usable, requests, tps,
                       f"{model.name}: {model.weights_gb:,.1f} GB weights x (1 + {overhead:g}) + one "
                       f"{model.context_tokens:,}-token context {context_gb:,.2f} GB = {need:,.1f} GB <= {n} x "
                       f"{device.memory_gb:g} GB x {utilisation:g} = {usable:,.1f} GB; {requests} requests of "
                       f"{model.average_sequence_tokens:,} tokens; {device.tokens_per_second:,.0f} tok/s x {n} x "
                       f"min(1, {device.reference_weights_gb:g} / {model.weights_gb:,.1f} GB) = {tps:,.1f} tok/s")
    most = device.per_machine * device.memory_gb * utilisation
    return Fit(False, 0, need, most, 0, 0.0,
               f"{model.name} ({model.parameters_billion:g} B, {model.quantisation}) needs {need:,.1f} GB "
               f"(weights {model.weights_gb:,.1f} GB x (1 + {overhead:g}) + one {model.context_tokens:,}-token "
               f"context {context_gb:,.2f} GB); one {device.name} gives at most {device.per_machine} x "
               f"{device.memory_gb:g} GB x {utilisation:g} = {most:,.1f} GB")


def replicas(f: Fit, *, peak_concurrency: float, average_tokens_per_second: float) -> tuple[int, dict[str, float]]:
    """Replicas for the peak (requests) and the volume (tokens/s); at least one is reserved."""
    for_peak = math.ceil(peak_concurrency / f.requests_per_replica) if f.requests_per_replica else 0
    for_volume = math.ceil(average_tokens_per_second / f.tokens_per_second_per_replica) \
        if f.tokens_per_second_per_replica else 0
    count = max(1, for_peak, for_volume)
    return count, {"replicas": count, "replicas_for_peak": for_peak, "replicas_for_volume": for_volume,
                   "devices_per_replica": f.devices_per_replica, "requests_per_replica": f.requests_per_replica,
                   "tokens_per_second_per_replica": f.tokens_per_second_per_replica,
                   "average_output_tokens_per_second": average_tokens_per_second}
