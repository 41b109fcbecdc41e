"""The node platforms a bundle can be built for, and where their packages come from.

A bundle part fits one (platform, Python): its Debian packages come from that
distribution's own archive and its wheels are chosen for that Python and C library.
The controller's own platform keeps using the controller's apt; any other platform gets
an apt of its own (a folder with its sources, lists, cache and an empty dpkg status,
named by ``APT_CONFIG``), so the machine's apt configuration is never touched.

Archives are authenticated as apt always does (``signed-by``), with the distribution's
keyring taken from its keyring package, whose SHA-256 is pinned here: a mirror cannot
substitute its own keys.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from triptyque.cachefill import locked
from triptyque.errors import MissingToolError, TargetError

T = TypeVar("T")
_WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
DEFAULT_ARCH = "amd64"


@dataclass(frozen=True)
class Keyring:
    """A distribution's archive keyring, read out of its .deb (checked against ``sha256``)."""

    package: str    # path of the .deb under the archive's URL
    sha256: str
    member: str     # the keyring file inside the package


# Pinned from the archives on 2026-12-01: the SHA-256 each archive's own (signed) Packages
# index lists for that file. The Ubuntu keyring's key F6ECB3762474EDA9D21B7022871920D1991BC93C
# ("Ubuntu Archive Automatic Signing Key (2018)") verified noble's InRelease with gpgv.
DEBIAN_KEYRING = Keyring(
    "pool/main/d/debian-archive-keyring/debian-archive-keyring_2023.3+deb12u2_all.deb",
    "f699e2f88dca05212f2a452b58475f2993cb6993dfbafb1d0205a3291eb8b4b8",
    "usr/share/keyrings/debian-archive-keyring.gpg",
)
UBUNTU_KEYRING = Keyring(
    "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb",
    "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8",
    "usr/share/keyrings/ubuntu-archive-keyring.gpg",
)


@dataclass(frozen=True)
class Distribution:
    """One distribution release an edge node may run."""

    release: str                 # debian-12, ubuntu-24.04 (bundle.platform_name without the arch)
    codename: str
    python: str                  # its python3
    glibc: tuple[int, int]       # its C library: the newest manylinux tag its wheels may carry
    family: str                  # debian or ubuntu
    components: tuple[str, ...]

    def mirror(self, arch: str) -> str:
        """The archive URL (TRIPTYQUE_DEBIAN_MIRROR / TRIPTYQUE_UBUNTU_MIRROR override it)."""
        configured = os.environ.get(f"TRIPTYQUE_{self.family.upper()}_MIRROR")
        if configured:
            return configured.rstrip("/")
        if self.family == "ubuntu":
            # Ubuntu serves amd64 from archive.ubuntu.com and the other architectures from ports.
            return ("http://archive.ubuntu.com/ubuntu" if arch == "amd64"
                    else "http://ports.ubuntu.com/ubuntu-ports")
        return "http://deb.debian.org/debian"

    @property
    def keyring(self) -> Keyring:
        return UBUNTU_KEYRING if self.family == "ubuntu" else DEBIAN_KEYRING

    def sources(self, arch: str, keyring: Path) -> str:
        """sources.list lines: the release with its updates and security fixes, as an
        up-to-date node has them (a -dev package must match the node's libc6 exactly)."""
        mirror = self.mirror(arch)
        options = f"[arch={arch} signed-by={keyring}]"
        parts = " ".join(self.components)
        if self.family == "ubuntu":
            suites = [(mirror, f"{self.codename}{s}") for s in ("", "-updates", "-security")]
        else:
            security = os.environ.get("TRIPTYQUE_DEBIAN_SECURITY_MIRROR",
                                      "http://deb.debian.org/debian-security")
            suites = [(mirror, self.codename), (mirror, f"{self.codename}-updates"),
                      (security.rstrip("/"), f"{self.codename}-security")]
        return "".join(f"deb {options} {url} {suite} {parts}\n" for url, suite in suites)


DISTRIBUTIONS: dict[str, Distribution] = {d.release: d for d in (
    Distribution("debian-12", "bookworm", "3.11", (2, 36), "debian", ("main",)),
    Distribution("debian-13", "trixie", "3.13", (2, 41), "debian", ("main",)),
    Distribution("ubuntu-22.04", "jammy", "3.10", (2, 35), "ubuntu", ("main", "universe")),
    # Scaleway's GPU OS 12 image is Ubuntu 24.04 (Noble): Pulumi.cloud-vm.yaml.
    Distribution("ubuntu-24.04", "noble", "3.12", (2, 39), "ubuntu", ("main", "universe")),
)}


def split_platform(name: str) -> tuple[Distribution, str]:
    """``ubuntu-24.04-amd64`` (or ``ubuntu-24.04``, amd64 implied) -> its release and arch."""
    text = name.strip().lower()
    release, _, arch = text.rpartition("-")
    if arch not in _WHEEL_ARCH:
        release, arch = text, DEFAULT_ARCH
    if release not in DISTRIBUTIONS:
        raise TargetError(f"unknown platform {name!r} (triptyque_platform): use one of "
                          f"{', '.join(sorted(DISTRIBUTIONS))}, optionally followed by -amd64 or -arm64")
    return DISTRIBUTIONS[release], arch


def normalise_platform(name: str) -> str:
    distribution, arch = split_platform(name)
    return f"{distribution.release}-{arch}"


def wheel_platforms(distribution: Distribution, arch: str) -> list[str]:
    """pip's --platform tags for that C library, newest first (pip does not expand
    ``manylinux_2_X`` to the older tags by itself)."""
    machine = _WHEEL_ARCH[arch]
    major, minor = distribution.glibc
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":
        tags += [f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    return tags


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise TargetError(f"pip {args[0]} failed while building the bundle:\n{tail}")


def download_wheels(requirements: Iterable[str], folder: Path, *, python: str,
                    distribution: Distribution, arch: str, constraints: Path | None) -> list[Path]:
    """Wheels for another Python and C library: ``pip download --only-binary`` with that
    interpreter's tags (nothing is built, so nothing runs for the wrong Python)."""
    folder.mkdir(parents=True, exist_ok=True)
    nodot = python.replace(".", "")
    args = ["download", "--quiet", "--dest", str(folder), "--only-binary=:all:",
            "--python-version", python, "--implementation", "cp", "--abi", f"cp{nodot}",
            "--abi", "abi3", "--abi", "none"]
    for tag in wheel_platforms(distribution, arch):
        args += ["--platform", tag]
    if constraints and constraints.exists():
        args += ["--constraint", str(constraints)]
    _pip(*args, *requirements)
    return sorted(folder.glob("*.whl"))


def _fetch(url: str, timeout: float = 60) -> bytes:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach {url} ({type(exc).__name__}: {exc}): the controller needs "
                          "that archive to build this platform's bundle part") from None
    return response.content


def verified_keyring(distribution: Distribution, arch: str, cache_dir: Path) -> Path:
    """The distribution's archive keyring, from its package checked against the pinned SHA-256."""
    keyring = distribution.keyring
    folder = cache_dir / "keyrings" / keyring.sha256[:16]
    path = folder / Path(keyring.member).name
    with locked(folder):
        if not path.exists():
            _extract_keyring(distribution, arch, folder, path)
    return path


def _extract_keyring(distribution: Distribution, arch: str, folder: Path, path: Path) -> None:
    keyring = distribution.keyring
    if shutil.which("dpkg-deb") is None:
        raise MissingToolError("dpkg-deb not found: build the bundle on a Debian or Ubuntu machine")
    data = _fetch(f"{distribution.mirror(arch)}/{keyring.package}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != keyring.sha256:
        raise TargetError(f"{keyring.package} from {distribution.mirror(arch)} has SHA-256 {digest}, "
                          f"not the pinned {keyring.sha256}: refusing its keys")
    folder.mkdir(parents=True, exist_ok=True)
    deb = folder / "keyring.deb"
    deb.write_bytes(data)
    extract = folder / "extract"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extract)], check=True, capture_output=True)
    shutil.copy2(extract / keyring.member, path)
    shutil.rmtree(extract)
    deb.unlink()


class Apt:
    """An apt of its own for one (release, arch): sources, lists and cache in a folder."""

    def __init__(self, distribution: Distribution, arch: str, cache_dir: Path) -> None:
        self.distribution, self.arch = distribution, arch
        self.root = cache_dir / "apt" / f"{distribution.release}-{arch}"
        self.config = self.root / "apt.conf"

    def _prepare(self) -> None:
        keyring = verified_keyring(self.distribution, self.arch, self.root.parent.parent)
        for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                    "etc/apt/trusted.gpg.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
                    "var/lib/dpkg"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "var/lib/dpkg/status").touch()
        (self.root / "etc/apt/sources.list").write_text(self.distribution.sources(self.arch, keyring))
        # Read first through APT_CONFIG; Dir then moves every other file apt reads
        # (apt.conf.d included) into this folder, away from the machine's /etc/apt.
        self.config.write_text(
            f'Dir "{self.root}/";\n'
            f'Dir::State::status "{self.root}/var/lib/dpkg/status";\n'
            f'APT::Architecture "{self.arch}";\n'
            f'APT::Architectures {{ "{self.arch}"; }};\n'
            'Acquire::Languages "none";\n'
            'APT::Install-Recommends "false";\n'
            'Debug::NoLocking "true";\n'
        )

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if shutil.which("apt-get") is None:
            raise MissingToolError("apt-get not found: build the bundle on a Debian or Ubuntu machine")
        env = {**os.environ, "APT_CONFIG": str(self.config)}
        return subprocess.run(["apt-get", *args], env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)

    def update(self) -> None:
        self._prepare()
        result = self.run("update")
        if result.returncode != 0 or "Err:" in result.stdout or "W: " in result.stderr:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise TargetError(f"the {self.distribution.release} archive at {self.distribution.mirror(self.arch)} "
                              f"is unreachable or unverified: {(detail or ['no output'])[-1]}")
        (self.root / ".updated").touch()

    def ready(self) -> None:
        if not (self.root / ".updated").exists():
            self.update()

    def fresh(self, fetch: Callable[[], T]) -> T:
        """``fetch()``, once more after ``apt-get update`` if it failed: cached lists may name
        versions the archive has since replaced with their updates."""
        with locked(self.root):  # one apt run at a time in this folder (it runs without apt's locks)
            try:
                return fetch()
            except TargetError:
                self.update()
                return fetch()

    def closure(self, names: Iterable[str], folder: Path) -> list[Path]:
        """``names`` and everything they need on an empty system, as .debs of this release."""
        self.ready()
        (folder / "partial").mkdir(parents=True, exist_ok=True)
        status = folder / "status"
        status.write_text("")
        result = self.run("install", "--download-only", "--yes", "--no-install-recommends",
                          "-o", f"Dir::Cache::archives={folder}", "-o", f"Dir::State::status={status}",
                          *names)
        if result.returncode != 0:
            raise TargetError(f"apt-get could not download {', '.join(names)} from "
                              f"{self.distribution.release}: {result.stderr.strip()[-300:]}")
        return sorted(folder.glob("*.deb"))

    def download(self, name: str, folder: Path) -> Path:
        """One package alone (no dependencies)."""
        self.ready()
        folder.mkdir(parents=True, exist_ok=True)
        result = self.run("download", name, cwd=folder)
        found = sorted(folder.glob(f"{name}_*.deb"))
        if result.returncode != 0 or not found:
            raise TargetError(f"apt-get download {name} from {self.distribution.release} failed: "
                              f"{result.stderr.strip()[-300:]}")
        return found[-1]
