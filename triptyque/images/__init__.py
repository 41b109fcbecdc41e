"""Container images built without a daemon: ``triptyque image build [--push REGISTRY]``.

The gateway image (``images/Containerfile``) and the CPU engine image (vLLM's CPU build,
``images/Containerfile.engine``, for CPU-only clusters) are built with buildah on a Debian
base made here with debootstrap (no registry needed), each cached per content hash of its
inputs, with a CycloneDX SBOM beside it. Their references (name, tag and digest) are written
into the spec's ``images.gateway`` and ``images.engine_cpu``, where ``triptyque render`` and
the Pulumi stacks read them (a target with ``resources.gpu_count: 0`` runs the CPU engine).
The GPU engine stays vLLM's upstream image: when the spec still has the zero placeholder for
it, its digest is asked of its registry (``skopeo inspect``) and recorded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from triptyque.images.build import PLACEHOLDER, Built, Progress, build_gateway, pinned_base, push, remote_digest
from triptyque.images.engine import build_engine, check_engine_version
from triptyque.images.record import record_images
from triptyque.images.tools import ImageError, cache_root
from triptyque.spec import load_spec

__all__ = ["Built", "ImageError", "Outcome", "build_images"]


@dataclass
class Outcome:
    built: list[Built]
    recorded: dict[str, str]  # images.<field> -> reference written into the spec
    notes: list[str] = field(default_factory=list)


def _engine(cache: Path, current: str, notes: list[str]) -> str | None:
    """The engine's reference with a real digest, or None when it cannot be had."""
    if not current.endswith(PLACEHOLDER):
        return None  # pinned already
    name = current.split("@", 1)[0]
    try:
        digest = remote_digest(cache, name)
    except ImageError as exc:
        notes.append(f"engine: {exc}; images.engine keeps its placeholder, which render refuses: "
                     "set the digest your registry reports")
        return None
    return f"{name}@{digest}"


def build_images(spec_path: Path, root: Path, *, registry: str | None = None, base: str | None = None,
                 progress: Progress = lambda _: None, cache: Path | None = None) -> Outcome:
    """Build (or find cached) the gateway and CPU engine images, push them when ``registry`` is
    given, and record the references in the spec file; ``base`` builds FROM that registry image
    instead of the debootstrapped Debian."""
    cache = cache or cache_root()
    spec = load_spec(spec_path)
    if base is not None:
        base = pinned_base(base)
    check_engine_version(root, spec)  # before building anything
    built = [build_gateway(root, cache, spec, progress, base=base),
             build_engine(root, cache, spec, progress, base=base)]
    if registry:
        for index, image in enumerate(built):
            progress(f"push {image.component} to {registry}")
            built[index] = push(cache, image, registry)
    gateway, engine_cpu = built
    references = {"gateway": gateway.reference, "engine_cpu": engine_cpu.reference}
    notes: list[str] = []
    if spec.images is not None:
        engine = _engine(cache, spec.images.engine, notes)
        if engine is not None:
            references["engine"] = engine
    record_images(spec_path, references)
    return Outcome(built=built, recorded=references, notes=notes)
