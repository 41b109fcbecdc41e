"""Cache folders filled once by one process at a time (triptyque.cachefill), as the bundle's
wheelhouses and Debian packages are when two commands, or the test suite's two lanes, need
them at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from triptyque.cachefill import MARKER, fill_once


def _fill_slowly(folder: str, log: str) -> None:
    def fill(into: Path) -> str:
        with open(log, "a") as handle:
            handle.write("filled\n")
        (into / "wheel.whl").write_text("x")
        return "made for the test"

    fill_once(Path(folder), fill)
    assert (Path(folder) / "wheel.whl").read_text() == "x"  # never a half-filled folder


def test_processes_asking_at_once_fill_the_folder_once(tmp_path: Path):
    folder, log = tmp_path / "wheelhouse" / "engine", tmp_path / "log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_fill_slowly, args=(str(folder), str(log))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert log.read_text() == "filled\n"
    assert (folder / MARKER).read_text() == "made for the test"


def test_a_failed_fill_leaves_no_marker_and_the_next_caller_starts_from_nothing(tmp_path: Path):
    folder = tmp_path / "debs"

    def broken(into: Path) -> str:
        (into / "half.deb").write_text("")
        raise RuntimeError("the archive went away")

    with pytest.raises(RuntimeError, match="the archive went away"):
        fill_once(folder, broken)
    assert not (folder / MARKER).exists()
    def whole(into: Path) -> str:
        (into / "whole.deb").write_text("")
        return "ok"

    fill_once(folder, whole)
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "whole.deb"]
