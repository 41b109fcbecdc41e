"""Drill hooks of the local target (``LocalTarget.drill_hooks()``).

What the phases mean here:
    infra_ready       preflight passed (vLLM importable, Prometheus found, ports free);
                      there is no infrastructure to create
    engine_installed  the engine process runs and printed its version banner (vLLM was
                      installed beforehand by `make venv`; that install is not timed here)
    weights_loaded    vLLM logged that the model was loaded ("Initializing model took" with
                      --load-format dummy, "Loading weights took" with real weights)
    ready / first_token   as for every target

Engine crash on the local target: nothing supervises the engine, so recovery is a human
step. The operator first tries `triptyque up local` (refused while the gateway and
Prometheus still run), then `triptyque resume`, which restarts a stopped engine (the
same path as after a hard kill). Both attempts are recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from triptyque.targets.hooks import DrillHooks

if TYPE_CHECKING:
    from triptyque.targets.local import LocalTarget

from triptyque.types import Access, Endpoint, Progress

ENGINE_BANNER = re.compile(r"version \d+\.\d+\.\d+|non-default args")
WEIGHTS_LOADED = re.compile(r"Loading weights took|Model loading took|Initializing model took")


class LogWatch:
    """Lines appended to a log file since this object was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def seen(self, pattern: re.Pattern[str]) -> Callable[[], bool]:
        def check() -> bool:
            if not self.path.exists():
                return False
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                return bool(pattern.search(handle.read().decode("utf-8", "replace")))

        return check


class LocalHooks(DrillHooks):
    cli_name = "local"
    can_crash_engine = True

    def __init__(self, target: LocalTarget) -> None:
        self.target = target

    def access(self) -> Access:
        return Access([Endpoint("local", self.target.gateway_url)], self.target.secrets()["api_key"],
                      self.target.spec.model.served_name)

    def deployed(self) -> bool:
        return bool(self.target.running())

    def progress_phases(self) -> dict[str, str]:
        return {r"^starting the engine": "infra_ready"}

    def deploy_probes(self) -> dict[str, Callable[[], bool]]:
        watch = LogWatch(self.target.root / "logs" / "engine.log")
        return {"engine_installed": watch.seen(ENGINE_BANNER), "weights_loaded": watch.seen(WEIGHTS_LOADED)}

    def crash_engine(self) -> str:
        engine = self.target.processes.get("engine")
        if engine is None or not engine.alive():
            raise NotImplementedError("the engine is not running")
        os.killpg(engine.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(engine.pid, 0)  # when this process started it, reap it
        return f"kill -KILL -- -{engine.pid}  # the engine's process group"

    def recovery(self, operator: str, progress: Progress) -> list[tuple[str, str, Callable[[], object]]]:
        target = self.target
        return [
            ("restart the service", "triptyque up local", lambda: target.up(progress)),
            ("restart the stopped engine", 'triptyque resume -t local -r "engine crashed"',
             lambda: target.resume(operator, "engine crashed", progress)),
        ]
