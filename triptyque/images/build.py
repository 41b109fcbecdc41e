"""Build the gateway image with buildah (no daemon), once per content hash of its inputs.

Inputs: ``images/Containerfile``, the gateway's pinned requirements (from
requirements.lock), the ``triptyque`` package's files and ``pyproject.toml``, the base
recipe and the spec's hash (a label). The same inputs give the cached image back without
building: ``<cache>/images/gateway-<key>/`` holds the image as an OCI layout (``oci/``,
gzip layers: its digest is the one a registry reports after ``skopeo copy
--preserve-digests``), its CycloneDX SBOM (``sbom.cdx.json``) and ``built.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from triptyque.images.base import base_rootfs, debs_in_image, has_image, import_base
from triptyque.images.requirements import gateway_requirements
from triptyque.images.sbom import write_sbom
from triptyque.images.tools import ImageError, environment, require, run
from triptyque.spec import ServiceSpec

# Bump when the build steps below change what the image holds.
BUILD_VERSION = 2
# Builds kept in the cache (each is ~80 MB of OCI layout and ~320 MB in the image storage).
KEEP = 4
DEFAULT_REPOSITORY = "ghcr.io/triptyque/gateway"
PLACEHOLDER = "sha256:" + "0" * 64

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Built:
    """One image: where it is kept, its digest, and the name it is recorded under."""

    component: str
    repository: str  # e.g. ghcr.io/triptyque/gateway (the spec's name for it)
    tag: str  # the package version
    digest: str  # sha256:<manifest digest>
    key: str  # content hash of the inputs
    home: str  # <cache>/images/<component>-<key>
    local: str  # its name in the project's image storage
    revision: str
    spec_hash: str
    base: str  # the image it was built FROM
    seconds: float  # how long the build took (0 when it came from the cache)
    cached: bool = False

    @property
    def layout(self) -> Path:
        return Path(self.home) / "oci"

    @property
    def sbom(self) -> Path:
        return Path(self.home) / "sbom.cdx.json"

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"


def _files_digest(root: Path, paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def package_files(root: Path) -> list[Path]:
    files = [p for p in (root / "triptyque").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
    return [*files, root / "pyproject.toml"]


def spec_hash(spec: ServiceSpec) -> str:
    """The spec's hash without its images (recording a digest must not change it)."""
    return spec.model_copy(update={"images": None}).spec_hash()


def git_revision(root: Path) -> str:
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def licence(root: Path) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    value = project.get("license", {})
    return str(value.get("text", "NOASSERTION") if isinstance(value, dict) else value)


def version(root: Path) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def repository_of(spec: ServiceSpec) -> str:
    return repository_name(spec, "gateway", DEFAULT_REPOSITORY)


def repository_name(spec: ServiceSpec, field: str, default: str) -> str:
    """The repository the spec's ``images.<field>`` names (without tag and digest), or ``default``."""
    reference = getattr(spec.images, field, None) if spec.images is not None else None
    if not reference:
        return default
    name = str(reference).split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def gateway_key(root: Path, spec: ServiceSpec, base: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The content hash of the inputs (``base``: a registry image pinned by digest, or None for
    the debootstrapped one) and the pinned requirements."""
    from triptyque.images.base import recipe_key

    pins = gateway_requirements(root)
    recipe = {
        "build": BUILD_VERSION,
        "containerfile": hashlib.sha256((root / "images" / "Containerfile").read_bytes()).hexdigest(),
        "requirements": pins,
        "package": _files_digest(root, package_files(root)),
        # A registry base counts by its digest: the same image under another name is the same input.
        "base": base.split("@", 1)[1] if base else recipe_key(),
        "pip": metadata.version("pip"),
        "spec": spec_hash(spec),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16], pins


def _pip(*argv: str, cwd: Path | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *argv],
                            capture_output=True, text=True, check=False, cwd=cwd, timeout=900)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise ImageError(f"pip {argv[0]} failed ({result.returncode}):\n{tail}")


def _wheels(cache: Path, pins: list[tuple[str, str]]) -> Path:
    """The pinned wheels (downloaded, or built for an sdist-only release), kept per pin set."""
    key = hashlib.sha256(json.dumps(pins).encode()).hexdigest()[:16]
    folder = cache / "images" / "wheels" / key
    if (folder / "complete").exists():
        return folder
    partial = folder.with_name(f"{key}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    requirements = partial / "requirements.txt"
    requirements.write_text("".join(f"{name}=={pin}\n" for name, pin in pins))
    _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(partial), "-r", str(requirements))
    _pip("download", "--no-deps", "--quiet", "--dest", str(partial / "tools"), f"pip=={metadata.version('pip')}")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    (folder / "complete").write_text("")
    return folder


def _package_wheel(root: Path, into: Path) -> Path:
    """triptyque's own wheel, built from a copy (no build/ or egg-info left in the checkout)."""
    with tempfile.TemporaryDirectory(prefix="triptyque-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        shutil.copy2(root / "pyproject.toml", source)
        shutil.copytree(root / "triptyque", source / "triptyque",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        (source / "README.md").write_text("triptyque: the gateway package (see the project's README).\n")
        _pip("wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(into), str(source))
    found = sorted(into.glob("triptyque-*.whl"))
    if not found:
        raise ImageError("building triptyque's wheel produced nothing")
    return found[-1]


def _context(home: Path, wheels: Path, root: Path) -> Path:
    context = home / "context"
    shutil.rmtree(context, ignore_errors=True)
    (context / "wheels").mkdir(parents=True)
    (context / "tools").mkdir()
    for wheel in wheels.glob("*.whl"):
        os.link(wheel, context / "wheels" / wheel.name)
    pip_wheel = next((wheels / "tools").glob("pip-*.whl"))
    shutil.copy2(pip_wheel, context / "tools" / "pip.whl")
    _package_wheel(root, context / "wheels")
    return context


def load_built(home: Path) -> Built | None:
    record = home / "built.json"
    if not record.exists():
        return None
    try:
        return Built(**{**json.loads(record.read_text()), "cached": True})
    except (TypeError, ValueError):  # written by an older version: build again
        return None


@contextlib.contextmanager
def build_lock(cache: Path, home: Path) -> Iterator[Built | None]:
    """The build already recorded in ``home`` (put back in image storage if it was pruned
    there), else ``None`` while the folder's lock is held: two processes asking for the same
    inputs build them once."""
    found = load_built(home)
    if found is not None:
        ensure_in_storage(cache, found)
        yield found
        return
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield load_built(home)


def base_to_build_from(cache: Path, base: str | None, progress: Progress) -> tuple[str, list[str]]:
    """The image to build FROM and buildah's pull flags: the Debian base made here, or a
    registry image pinned by digest (TLS verified unless its registry is on the loopback)."""
    if base is None:
        progress("base: debootstrap a minimal Debian (once per recipe)")
        return import_base(cache, base_rootfs(cache)), ["--pull-never"]
    return base, [f"--tls-verify={not loopback(base.split('/', 1)[0])}"]


def pinned_base(base: str) -> str:
    if "@sha256:" not in base or base.endswith(PLACEHOLDER):
        raise ImageError(f"--base {base}: pin the base image by digest (NAME:TAG@sha256:...), so that "
                         "the same inputs give the same image")
    return base


def build_gateway(root: Path, cache: Path, spec: ServiceSpec, progress: Progress = lambda _: None,
                  base: str | None = None) -> Built:
    """The gateway image for these inputs: from the cache when it holds it, else built now.

    ``base``: a registry image to build FROM (e.g. python:3.11-slim-bookworm@sha256:...)
    instead of the Debian base made here with debootstrap.
    """
    require("buildah", "skopeo", "runc", *(() if base else ("debootstrap",)))
    if base is not None:
        base = pinned_base(base)
    key, pins = gateway_key(root, spec, base)
    home = cache / "images" / f"gateway-{key}"
    with build_lock(cache, home) as found:
        if found is not None:
            return found
        started = time.monotonic()
        base_image, pull = base_to_build_from(cache, base, progress)
        progress(f"wheels: {len(pins)} pinned distributions")
        wheels = _wheels(cache, pins)
        context = _context(home, wheels, root)
        tag = version(root)
        local = f"localhost/triptyque/gateway:{key}"
        revision = git_revision(root)
        hashed = spec_hash(spec)
        labels = {
            "org.opencontainers.image.title": "triptyque-gateway",
            "org.opencontainers.image.version": tag,
            "org.opencontainers.image.revision": revision,
            "org.opencontainers.image.licenses": licence(root),
            **({"org.opencontainers.image.base.digest": base.split("@", 1)[1]} if base else
               {"org.opencontainers.image.base.name": base_image}),
            "io.triptyque.spec-hash": hashed,
            "io.triptyque.inputs": key,
        }
        marks = [f"{flag}={name}={value}" for name, value in labels.items()
                 for flag in ("--label", "--annotation")]
        progress("buildah bud images/Containerfile")
        run(cache, "buildah", "bud", "--format", "oci", "--network", "none", *pull,
            "--build-arg", f"BASE={base_image}", *marks, "--tag", local,
            "--file", str(root / "images" / "Containerfile"), str(context), timeout=1800)
        layout = home / "oci"
        shutil.rmtree(layout, ignore_errors=True)
        digest_file = home / "digest"
        run(cache, "buildah", "push", "--format", "oci", "--digestfile", str(digest_file),
            local, f"oci:{layout}:{tag}", timeout=900)
        digest = digest_file.read_text().strip()
        shutil.rmtree(context)
        built = Built(component="gateway", repository=repository_of(spec), tag=tag, digest=digest, key=key,
                      home=str(home), local=local, revision=revision, spec_hash=hashed, base=base_image,
                      seconds=round(time.monotonic() - started, 1))
        progress("SBOM (CycloneDX)")
        write_sbom(built.sbom, built, pins, debs_in_image(cache, local), wheels)
        (home / "built.json").write_text(json.dumps({k: v for k, v in asdict(built).items() if k != "cached"},
                                                    indent=2) + "\n")
    prune(cache)
    return built


def prune(cache: Path, keep: int = KEEP, component: str = "gateway") -> list[str]:
    """Forget all but the ``keep`` most recent builds of ``component`` (cache folder and stored
    image); their keys."""
    homes = sorted((p for p in (cache / "images").glob(f"{component}-*")
                    if (p / "built.json").exists() and p.name.count("-") == component.count("-") + 1),
                   key=lambda p: (p / "built.json").stat().st_mtime, reverse=True)
    gone = []
    for home in homes[keep:]:
        key = home.name.removeprefix(f"{component}-")
        with contextlib.suppress(ImageError):
            run(cache, "buildah", "rmi", "--force", f"localhost/triptyque/{component}:{key}", timeout=120)
        shutil.rmtree(home, ignore_errors=True)
        gone.append(key)
    if gone:
        with contextlib.suppress(ImageError):
            run(cache, "buildah", "rmi", "--prune", timeout=300)
    return gone


def ensure_in_storage(cache: Path, built: Built) -> None:
    """Put the image back into the project's storage from its OCI layout when it went missing."""
    if not has_image(cache, built.local):
        run(cache, "skopeo", "copy", "--quiet", f"oci:{built.layout}:{built.tag}",
            f"containers-storage:{built.local}", timeout=900)


def loopback(registry: str) -> bool:
    host = registry.split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]")


def push(cache: Path, built: Built, registry: str) -> Built:
    """Copy the image to REGISTRY with its digest unchanged; the Built now named there."""
    registry = registry.rstrip("/")
    repository = f"{registry}/triptyque/{built.component}"
    digest_file = Path(built.home) / "pushed-digest"
    run(cache, "skopeo", "copy", "--quiet", "--preserve-digests", f"--dest-tls-verify={not loopback(registry)}",
        "--digestfile", str(digest_file), f"oci:{built.layout}:{built.tag}",
        f"docker://{repository}:{built.tag}", timeout=1800)
    pushed = digest_file.read_text().strip()
    if pushed != built.digest:
        raise ImageError(f"{repository}: the registry reports {pushed}, the image built is {built.digest}")
    return Built(**{**asdict(built), "repository": repository})


def remote_digest(cache: Path, reference: str) -> str:
    """The digest a registry reports for NAME:TAG: the SHA-256 of the manifest (or manifest
    list) bytes the tag points to, as a pull by digest checks them."""
    registry = reference.split("/", 1)[0]
    argv = ["skopeo", "inspect", "--raw", "--retry-times", "1", f"--tls-verify={not loopback(registry)}",
            f"docker://{reference}"]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=120, check=False, env=environment(cache))
    except subprocess.TimeoutExpired:
        raise ImageError(f"{reference}: its registry did not answer within 120 s") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        message = message.split('msg="', 1)[-1].rstrip('"')
        raise ImageError(f"{reference}: {message}")
    return "sha256:" + hashlib.sha256(result.stdout).hexdigest()
