"""The vLLM engine: one GPU Deployment, its Service, its model cache and model files."""

from __future__ import annotations

import base64
import hashlib
import math
import re
from pathlib import Path
from typing import Any

from triptyque.engine import engine_args
from triptyque.errors import TargetError
from triptyque.k8s.config import StackConfig
from triptyque.k8s.names import CACHE_DIR, HTTP, MODELS_DIR, Names
from triptyque.k8s.pods import (
    container_security,
    http_probe,
    pod_security,
    pre_stop_sleep,
)
from triptyque.spec import ServiceSpec

GPU_RESOURCE = "nvidia.com/gpu"
# The engine replicas the stack serves with (what resume restores), on the engine Deployment.
REPLICAS_ANNOTATION = "triptyque.io/serving-replicas"
# A local model folder travels in a ConfigMap, whose limit is 1 MiB with its metadata.
MODEL_FILES_LIMIT = 900 * 1024
# Seconds a terminating engine keeps serving while Services and gateways stop sending to it.
DEREGISTER_SECONDS = 10
# Before the startup probe's budget even starts: a GPU node to join (the pool autoscales, the
# GPU operator advertises nvidia.com/gpu) and the multi-GB vLLM image to pull.
SCHEDULE_AND_PULL_SECONDS = 900


def gpus_per_node(node_type: str) -> int:
    """GPUs of a Scaleway GPU node type, from its name: ``<GPU>-<count>-<memory>G`` (L4-1-24G,
    L4-2-24G, L40S-4-48G, H100-SXM-8-80G); 1 for the older single-GPU names (GPU-3070-S, RENDER-S)."""
    found = re.search(r"-(\d+)-\d+G$", node_type)
    return int(found.group(1)) if found else 1


def max_engine_replicas(spec: ServiceSpec, config: StackConfig) -> int | None:
    """How many engines the Kapsule GPU pool holds at its maxSize; None where no pool bounds it."""
    if config.target != "cloud" or not spec.resources.gpu_count:
        return None
    pool = config.scaleway_or_default.gpu_pool
    node_type = pool.node_type or spec.resources.gpu_type  # as stacks/kapsule.py creates the pool
    per_node = gpus_per_node(node_type) // spec.resources.gpu_count
    if per_node == 0:
        raise TargetError(
            f"an engine needs {spec.resources.gpu_count} GPUs (resources.gpu_count) but a {node_type} "
            f"node of the GPU pool has {gpus_per_node(node_type)}: choose a larger scaleway.gpuPool.nodeType")
    return pool.max_size * per_node


def engine_replicas(spec: ServiceSpec, config: StackConfig) -> int:
    """The stack's engine replica count, refused when the GPU pool cannot hold it."""
    wanted, most = config.engine.replicas, max_engine_replicas(spec, config)
    if most is not None and wanted > most:
        pool = config.scaleway_or_default.gpu_pool
        raise TargetError(
            f"triptyque:engine.replicas is {wanted} but the GPU pool holds at most {most} "
            f"(maxSize {pool.max_size} x {most // pool.max_size} per node): raise "
            "scaleway.gpuPool.maxSize or lower engine.replicas")
    return wanted


def startup_seconds(spec: ServiceSpec, config: StackConfig) -> int:
    """The startup budget: the spec's (per target), unless the stack file overrides it."""
    return config.engine.startup_seconds or spec.engine.startup_seconds


def rollout_seconds(spec: ServiceSpec, config: StackConfig) -> int:
    """How long one engine rollout may take: the old pod drains (Recreate), a new one is
    scheduled and pulled, then loads the model within the startup budget. The Deployment's
    progressDeadlineSeconds and Pulumi's custom timeouts (stacks/inference.py) both derive
    from it, so neither gives up while the startup probe still allows the engine to come up."""
    return (DEREGISTER_SECONDS + config.engine.drain_seconds + SCHEDULE_AND_PULL_SECONDS
            + startup_seconds(spec, config))

# Every cache vLLM, PyTorch, Triton and the Hugging Face hub write lives on the model cache
# volume, so a restarted pod neither downloads the weights again nor recompiles kernels.
CACHE_ENV = {
    "HOME": "/tmp",
    "HF_HOME": f"{CACHE_DIR}/huggingface",
    "VLLM_CACHE_ROOT": f"{CACHE_DIR}/vllm",
    "XDG_CACHE_HOME": f"{CACHE_DIR}/xdg",
    "TRITON_CACHE_DIR": f"{CACHE_DIR}/triton",
    "TORCHINDUCTOR_CACHE_DIR": f"{CACHE_DIR}/inductor",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def model_files(spec: ServiceSpec) -> dict[str, bytes] | None:
    """The files of a local model folder, or None when the model comes from the hub."""
    folder = spec.model_path
    if folder is None:
        return None
    files: dict[str, bytes] = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            raise TargetError(
                f"model.source {spec.model.source}: sub-folder {path.name} cannot travel in a "
                "ConfigMap; use a Hugging Face id for models with nested files"
            )
        files[path.name] = path.read_bytes()
    size = sum(len(data) for data in files.values())
    if size > MODEL_FILES_LIMIT:
        raise TargetError(
            f"model.source {spec.model.source} is {size // 1024} KiB; a local folder reaches the "
            f"cluster in a ConfigMap (at most {MODEL_FILES_LIMIT // 1024} KiB): put real weights "
            "on the Hugging Face hub (or a mirror) and name that id in model.source"
        )
    return files


def _model_path(spec: ServiceSpec) -> str | None:
    """Where the engine container reads a local model folder (its ConfigMap's mount)."""
    return f"{MODELS_DIR}/{Path(spec.model.source).name}" if spec.model_is_local else None


def _resources(spec: ServiceSpec) -> dict[str, Any]:
    amounts: dict[str, str] = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    if spec.resources.gpu_count:
        amounts[GPU_RESOURCE] = str(spec.resources.gpu_count)
    # Requests equal limits: the GPU cannot be overcommitted and Guaranteed QoS keeps the
    # engine last in line for eviction.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _env(spec: ServiceSpec, config: StackConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": k, "value": v} for k, v in sorted({**CACHE_ENV, **spec.engine.env}.items())
    ]
    if config.engine.hf_token_secret:
        env.append({
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": config.engine.hf_token_secret, "key": "HF_TOKEN"}},
        })
    return env


def model_files_name(names: Names, files: dict[str, bytes]) -> str:
    # Named after the content: the ConfigMap is immutable, so new files mean a new object.
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"{names.model_files}-{digest.hexdigest()[:10]}"


def cache_claim_spec(config: StackConfig) -> dict[str, Any]:
    # ReadWriteOnce: Scaleway's block storage (Kapsule's default class) attaches a volume to one
    # node at a time, so replicas cannot share one cache.
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": config.model_cache.size}},
    }
    if config.model_cache.storage_class:
        claim["storageClassName"] = config.model_cache.storage_class
    return claim


def _cache_volume(config: StackConfig, names: Names) -> dict[str, Any]:
    """One engine: the named claim, kept across restarts, rollouts and a hard kill. Several:
    a generic ephemeral volume, one claim per pod, made and removed with it (Kubernetes docs,
    "Ephemeral Volumes": the claim is owned by the pod), so each replica has its own RWO cache
    and fills it again when it starts on a new pod."""
    if config.engine.replicas == 1:
        return {"name": "cache", "persistentVolumeClaim": {"claimName": names.model_cache}}
    return {"name": "cache", "ephemeral": {"volumeClaimTemplate": {
        "metadata": {"labels": names.labels("engine")}, "spec": cache_claim_spec(config)}}}


def _volumes(
    spec: ServiceSpec, config: StackConfig, names: Names, model_map: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    shm_gib = max(1, spec.engine.tensor_parallel_size * 2)
    volumes: list[dict[str, Any]] = [
        _cache_volume(config, names),
        {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}},
        # NCCL and PyTorch pass tensors through /dev/shm between tensor-parallel ranks.
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib}Gi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    if model_map is not None:
        volumes.append({"name": "model", "configMap": {"name": model_map}})
        mounts.append({
            "name": "model", "mountPath": f"{MODELS_DIR}/{Path(spec.model.source).name}",
            "readOnly": True,
        })
    return volumes, mounts


# Set on every GPU node by NVIDIA's GPU feature discovery (part of the GPU operator): the
# product name with spaces as dashes, e.g. NVIDIA-L4, NVIDIA-H100-80GB-HBM3.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def gpu_node_selector(spec: ServiceSpec, config: StackConfig) -> dict[str, str]:
    """Where the engine may run: the stack's own selector when it sets one; on a Kapsule
    GPU pool, its label (the pool's node type is the spec's gpu_type); on-prem, a node whose
    GPU is the spec's gpu_type, as feature discovery names it."""
    selector = dict(config.gpu_node_selector)
    if config.target == "onprem" and config.engine.gpu_node_selector is None:
        selector[GPU_PRODUCT_LABEL] = spec.resources.gpu_type
    return selector


def engine_deployment(
    spec: ServiceSpec, config: StackConfig, names: Names, image: str, model_map: str | None
) -> dict[str, Any]:
    volumes, mounts = _volumes(spec, config, names, model_map)
    startup_period = 10
    container: dict[str, Any] = {
        "name": "vllm",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3"],
        "args": engine_args(spec, host="0.0.0.0", model=_model_path(spec)),
        "env": _env(spec, config),
        "ports": [{"name": HTTP, "containerPort": spec.engine.port, "protocol": "TCP"}],
        "resources": _resources(spec),
        "securityContext": container_security(),
        "volumeMounts": mounts,
        # Downloading and loading weights can take many minutes; liveness only starts after.
        "startupProbe": http_probe(
            "/health", period=startup_period,
            failures=math.ceil(startup_seconds(spec, config) / startup_period),
        ),
        "readinessProbe": http_probe("/health", period=5, failures=3),
        "livenessProbe": http_probe("/health", period=10, failures=6, timeout=5),
        "lifecycle": pre_stop_sleep(DEREGISTER_SECONDS),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": names.engine,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        # After the pre-stop pause, SIGTERM makes vLLM's HTTP server refuse new requests and
        # finish the ones in flight; this is how long they get before SIGKILL.
        "terminationGracePeriodSeconds": DEREGISTER_SECONDS + config.engine.drain_seconds,
        "containers": [container],
        "volumes": volumes,
    }
    if spec.resources.gpu_count:
        pod["nodeSelector"] = gpu_node_selector(spec, config)
        pod["tolerations"] = [
            t.model_dump(exclude_none=True) for t in config.engine.gpu_tolerations
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": names.metadata(names.engine, "engine",
                                   annotations={REPLICAS_ANNOTATION: str(config.engine.replicas)}),
        "spec": {
            # No `replicas`: the kill switch owns them (a hard kill scales to 0, resume to the
            # stack's engine.replicas, also in the REPLICAS_ANNOTATION; `pulumi up` sets them on
            # creation only, stacks/inference.py).
            # An applier leaves alone a field its manifest does not set: Kubernetes creates the
            # Deployment with 1, Pulumi and Flux apply server-side (unset fields are not theirs),
            # Argo CD diffs only what the manifest and its last apply hold; so neither a `pulumi
            # up` nor a GitOps self-heal brings a killed engine back.
            # One engine (one GPU, one ReadWriteOnce cache): the old pod goes before the new one
            # starts. Several: one pod at a time, each freeing its GPUs before its successor.
            "strategy": {"type": "Recreate"} if config.engine.replicas == 1 else {
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            # Kubernetes' default (600 s) is shorter than the startup probe allows.
            "progressDeadlineSeconds": rollout_seconds(spec, config),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": names.selector("engine")},
            "template": {"metadata": {"labels": names.labels("engine")}, "spec": pod},
        },
    }


def engine_objects(
    spec: ServiceSpec, config: StackConfig, names: Names, image: str
) -> list[dict[str, Any]]:
    engine_replicas(spec, config)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": names.metadata(names.engine, "engine"),
            "automountServiceAccountToken": False,
        },
    ]
    if config.engine.replicas == 1:
        objects.append({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": names.metadata(names.model_cache, "engine"),
            "spec": cache_claim_spec(config),
        })
    files = model_files(spec)
    model_map = None if files is None else model_files_name(names, files)
    if files is not None and model_map is not None:
        text, binary = {}, {}
        for name, data in files.items():
            try:
                text[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                binary[name] = base64.b64encode(data).decode("ascii")
        config_map: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": names.metadata(model_map, "engine"),
            "immutable": True,
            "data": text,
        }
        if binary:
            config_map["binaryData"] = binary
        objects.append(config_map)
    objects.append(engine_deployment(spec, config, names, image, model_map))
    objects.append({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": names.metadata(names.engine, "engine"),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector("engine"),
            "ports": [{"name": HTTP, "port": spec.engine.port, "targetPort": HTTP, "protocol": "TCP"}],
        },
    })
    return objects
