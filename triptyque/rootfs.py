"""A debootstrapped root filesystem, made once per recipe and shared by every process.

The container images' base (triptyque.images.base) and the edge test fleet's hosts
(tests/support/fleet.py) are both made this way: ``<home>/rootfs`` is complete once
``<home>/complete`` exists; the first process to get ``<home>/lock`` builds it in
``rootfs.partial`` and renames it, and the others wait for it and reuse it.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path


class RootfsError(RuntimeError):
    pass


def debootstrap_once(home: Path, *, suite: str, mirror: str, packages: Sequence[str], recipe: str,
                     prepare: Callable[[Path], None], options: Sequence[str] = (),
                     script: Sequence[str] = (), timeout: float = 1200) -> Path:
    """``home/rootfs``: ``debootstrap --variant=minbase`` of ``suite`` with ``packages``, then
    ``prepare``, done by one process at a time and never again while ``home/complete`` exists
    (it records ``recipe``). ``options`` go before the suite (``--keyring``), ``script`` after
    the mirror (a script for a release this debootstrap predates)."""
    rootfs = home / "rootfs"
    if (home / "complete").exists():
        return rootfs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "complete").exists():
            return rootfs
        staging = home / "rootfs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", *options,
                suite, str(staging), mirror, *script]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise RootfsError("debootstrap not found: apt-get install debootstrap") from None
        if result.returncode != 0:
            tail = "\n".join((result.stdout.strip() + "\n" + result.stderr.strip()).strip().splitlines()[-10:])
            raise RootfsError(f"debootstrap of {suite} failed ({result.returncode}); is {mirror} reachable?\n{tail}")
        prepare(staging)
        shutil.rmtree(rootfs, ignore_errors=True)
        staging.rename(rootfs)
        (home / "complete").write_text(recipe)
    return rootfs
