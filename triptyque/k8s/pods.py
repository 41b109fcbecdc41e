"""Pod pieces the engine and the gateway share: hardening, probes, resources."""

from __future__ import annotations

from typing import Any

from triptyque.errors import TargetError
from triptyque.k8s.names import HTTP, RUN_AS
from triptyque.spec import ServiceSpec

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, *, period: int, failures: int, timeout: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": HTTP},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def pre_stop_sleep(seconds: int) -> dict[str, Any]:
    # An exec sleep rather than the lifecycle `sleep` action: that one needs Kubernetes 1.30.
    return {"preStop": {"exec": {"command": ["sleep", str(seconds)]}}}


def pinned_images(spec: ServiceSpec, where: str) -> tuple[str, str]:
    """The (engine, gateway) images; a TargetError when the spec has none or a placeholder.

    A target without GPUs (resources.gpu_count: 0, the CPU-only cluster profile) runs vLLM's
    CPU build, images.engine_cpu (made by `triptyque image build`); the others vLLM's image."""
    if spec.images is None:
        raise TargetError(
            f"{where}: images: the Kubernetes targets need images.engine and images.gateway, "
            "each pinned by digest (name@sha256:...)"
        )
    engine_field = "engine" if spec.resources.gpu_count else "engine_cpu"
    engine = spec.images.engine if spec.resources.gpu_count else spec.images.engine_cpu
    if engine is None:
        raise TargetError(
            f"{where}: images.engine_cpu: resources.gpu_count is 0, so the engine is vLLM's CPU "
            "build; run `triptyque image build` to build it and record its digest here"
        )
    for field, image in ((engine_field, engine), ("gateway", spec.images.gateway)):
        if image.endswith(PLACEHOLDER_DIGEST):
            raise TargetError(
                f"{where}: images.{field}: the digest is the zero placeholder; set the digest your "
                f"registry reports for {image.split('@', 1)[0]} (e.g. `crane digest IMAGE`)"
            )
    tag = engine.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    if tag and tag.lstrip("v") != spec.engine.version:
        raise TargetError(
            f"{where}: images.{engine_field} is tagged {tag} but engine.version is {spec.engine.version}; "
            "pin the image of the version the spec names"
        )
    return engine, spec.images.gateway
