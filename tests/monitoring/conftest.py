"""Shared fixtures: the repository's spec and monitoring files, the Prometheus tools, ports.

Tests that start processes use ports 28000-28099 only, one fixed port per test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT
from triptyque.monitoring import config
from triptyque.spec import DEFAULT_SPEC, ServiceSpec, load_spec
from triptyque.wait import WaitTimeout, wait_http

MONITORING = ROOT / "monitoring"


def tool(*names: str) -> str:
    """The first of ``names`` on PATH; a missing tool fails the test with the package to install."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{names[0]} not found: apt-get install prometheus prometheus-alertmanager "
                "prometheus-node-exporter")


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def spec() -> ServiceSpec:
    """The spec the checked-in files are rendered from."""
    return load_spec(ROOT / DEFAULT_SPEC, target=config.CHECKED_IN_TARGET)


@pytest.fixture(scope="session")
def local_spec() -> ServiceSpec:
    return load_spec(ROOT / DEFAULT_SPEC, target="local")


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return tool("amtool")


@contextlib.contextmanager
def started(argv: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session, stopped (with its children) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, **kwargs)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def wait_until_ok(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    def exited() -> str | None:
        return None if process.poll() is None else f"{process.args!r} exited {process.returncode}"

    try:
        wait_http(url, timeout=timeout, abort=exited)
    except WaitTimeout as exc:
        pytest.fail(f"{exc}:\n{log.read_text()[-3000:]}")
