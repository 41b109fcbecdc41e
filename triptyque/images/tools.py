"""The container tools (buildah, skopeo, podman) run with the project's own configuration.

Nothing of the machine's own container configuration is read or changed: every call gets
``CONTAINERS_CONF`` (images/containers.conf: runc, lowered ulimits; written under the cache
with podman's network folder there too) and
``CONTAINERS_STORAGE_CONF`` (a storage under the cache folder), so images built here live
in ``.cache/`` and go away with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from triptyque.errors import TargetError
from triptyque.paths import project_root

# Debian packages that provide each command (scripts/system-deps.sh installs them).
PACKAGES = {
    "buildah": "buildah",
    "skopeo": "skopeo",
    "podman": "podman",
    "runc": "runc",
    "debootstrap": "debootstrap",
}


class ImageError(TargetError):
    """A build, push or inspection of an image failed."""


def cache_root() -> Path:
    """Where built images, their bases and SBOMs are kept (shared with the edge fleet)."""
    return Path(os.environ.get("TRIPTYQUE_CACHE", project_root() / ".cache" / "triptyque"))


def containers_conf(cache: Path) -> Path:
    """images/containers.conf, plus the one setting that needs an absolute path: podman's
    network definitions (``podman kube play`` creates one) go under the cache, not /etc."""
    home = cache / "images" / "containers"
    conf = home / "containers.conf"
    text = (
        (project_root() / "images" / "containers.conf").read_text()
        + "\n# Added by triptyque.images (an absolute path).\n[network]\n"
        + f'network_config_dir = "{home / "networks"}"\n'
    )
    if not conf.exists() or conf.read_text() != text:
        (home / "networks").mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    return conf


def storage_conf(cache: Path) -> Path:
    """A storage.conf whose graph root is under the cache (written once, read by every tool)."""
    home = cache / "images" / "containers"
    conf = home / "storage.conf"
    text = (
        "# Written by triptyque.images: the project's own image storage, not the machine's.\n"
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{home / "storage"}"\n'
        f'runroot = "{home / "run"}"\n'
    )
    if not conf.exists() or conf.read_text() != text:
        home.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    return conf


def environment(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONTAINERS_CONF": str(containers_conf(cache)),
        "CONTAINERS_STORAGE_CONF": str(storage_conf(cache)),
        # buildah and podman look here for their own, temporary files.
        "TMPDIR": os.environ.get("TMPDIR", "/var/tmp"),
    }


def require(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        packages = " ".join(sorted({PACKAGES.get(c, c) for c in missing}))
        raise ImageError(
            f"{', '.join(missing)} not found: run scripts/system-deps.sh as root "
            f"(apt-get install {packages})"
        )
    if os.geteuid() != 0:
        raise ImageError("building images needs root here (buildah and podman run rootful on this machine)")


def run(cache: Path, *argv: str, timeout: float = 600, input: str | None = None) -> str:
    """Run one tool with the project's configuration; its stdout, or an ImageError."""
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False,
            env=environment(cache), input=input,
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"{' '.join(argv[:3])} took more than {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ImageError(f"{' '.join(argv[:4])} failed ({result.returncode}):\n{tail}")
    return result.stdout
