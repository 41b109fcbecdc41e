"""Cache folders filled once and shared by every process of this machine.

A folder is complete once its ``.complete`` marker exists. The first process to hold the
folder's lock (``.<name>.lock`` beside it, an flock) fills it; the others wait for the lock,
then reuse what it made. Two commands, or two lanes of the test suite, asking for the same
wheels or packages at once download them once, and neither reads the other's half-written
folder. A fill that fails leaves no marker, so the next caller starts again from nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

MARKER = ".complete"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the machine-wide lock of ``path`` (a file beside it) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def fill_once(folder: Path, fill: Callable[[Path], str]) -> Path:
    """``folder``, filled by ``fill(folder)`` (into an empty folder) unless a process already did;
    what ``fill`` returns is recorded in the marker (what the folder was made for)."""
    if (folder / MARKER).exists():
        return folder
    with locked(folder):
        if (folder / MARKER).exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        made_for = fill(folder)
        (folder / MARKER).write_text(made_for)
    return folder
