"""The base image: a minimal Debian root filesystem made by debootstrap, imported as an image.

No registry is reachable where this project is built and tested, so no base can be
pulled; debootstrap fetches Debian packages from the mirror instead (the edge test fleet
makes its hosts the same way, in the same cache folder). The root filesystem is made
once per recipe and kept under ``<cache>/images/base-<suite>-<key>/``; the image is
imported into the project's image storage when that storage lacks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from triptyque.images.tools import ImageError, run
from triptyque.rootfs import RootfsError, debootstrap_once

SUITE = "bookworm"
MIRROR = os.environ.get("TRIPTYQUE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Python, nothing else: minbase brings the Essential set (a shell, coreutils, dpkg, apt).
PACKAGES = ("python3",)
# Bump when _prepare changes what ends up in the root filesystem.
RECIPE_VERSION = 1
# Debian's documentation, manuals, translations and apt's lists: not needed to run Python.
_STRIP = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
          "usr/share/lintian", "var/lib/apt/lists", "var/cache/apt", "var/cache/debconf/templates.dat-old",
          "var/log")


@dataclass(frozen=True)
class Base:
    key: str
    rootfs: Path
    image: str  # the name in the project's image storage

    @property
    def home(self) -> Path:
        return self.rootfs.parent


def recipe_key() -> str:
    recipe = json.dumps([SUITE, MIRROR, sorted(PACKAGES), RECIPE_VERSION, _STRIP])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def base_rootfs(cache: Path) -> Base:
    """The debootstrapped root filesystem, made once and reused while its recipe holds."""
    key = recipe_key()
    home = cache / "images" / f"base-{SUITE}-{key}"
    base = Base(key, home / "rootfs", f"localhost/triptyque/base:{SUITE}-{key}")
    debs = cache / "images" / "debs"  # downloaded packages, kept for the next recipe
    debs.mkdir(parents=True, exist_ok=True)
    try:
        debootstrap_once(home, suite=SUITE, mirror=MIRROR, packages=PACKAGES, options=[f"--cache-dir={debs}"],
                         recipe=json.dumps([SUITE, MIRROR, sorted(PACKAGES), RECIPE_VERSION]), prepare=_prepare)
    except RootfsError as exc:
        raise ImageError(str(exc)) from None
    return base


def _prepare(rootfs: Path) -> None:
    for path in _STRIP:
        target = rootfs / path
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir(mode=0o755)
        else:
            target.unlink(missing_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    # Filled in by the container runtime.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/machine-id"):
        (rootfs / name).unlink(missing_ok=True)
        (rootfs / name).write_text("")


def installed_debs(status: str) -> list[tuple[str, str, str]]:
    """(package, version, architecture) of every Debian package installed, from dpkg's status."""
    found = []
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            found.append((fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")))
    return sorted(found)


def debs_in_image(cache: Path, image: str) -> list[tuple[str, str, str]]:
    """The Debian packages an image holds (none when it has no dpkg database)."""
    container = run(cache, "buildah", "from", "--pull-never", image).strip()
    try:
        status = Path(run(cache, "buildah", "mount", container).strip()) / "var/lib/dpkg/status"
        return installed_debs(status.read_text()) if status.exists() else []
    finally:
        run(cache, "buildah", "rm", container)


def has_image(cache: Path, name: str) -> bool:
    try:
        run(cache, "buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name, timeout=60)
    except ImageError:
        return False
    return True


def import_base(cache: Path, base: Base) -> str:
    """The base as an image in the project's storage (imported from the root filesystem once)."""
    if has_image(cache, base.image):
        return base.image
    container = run(cache, "buildah", "from", "--name", f"triptyque-base-{base.key}", "scratch").strip()
    try:
        mount = Path(run(cache, "buildah", "mount", container).strip())
        copy = subprocess.run(["cp", "-a", f"{base.rootfs}/.", str(mount)], capture_output=True, text=True,
                              check=False)
        if copy.returncode != 0:
            raise ImageError(f"copying the base into the image failed: {copy.stderr.strip()}")
        run(cache, "buildah", "umount", container)
        run(cache, "buildah", "config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8", "--cmd", "/bin/sh",
            "--label", f"io.triptyque.base=debian-{SUITE}-minbase-{base.key}", container)
        run(cache, "buildah", "commit", "--format", "oci", "--rm", container, base.image, timeout=900)
    except BaseException:
        with contextlib.suppress(ImageError):
            run(cache, "buildah", "rm", container)
        raise
    return base.image
