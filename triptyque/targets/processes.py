"""Background processes for the local target: started detached, tracked by pid file.

A pid file records the pid and the process's start time (from /proc), so a recycled
pid is never mistaken for ours and never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from triptyque.errors import PortInUseError


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


@dataclass
class Managed:
    name: str
    pid: int
    started: str
    log: Path

    def alive(self) -> bool:
        if _start_time(self.pid) != self.started:
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


class ProcessTable:
    """One pid file per named process under ``run_dir``."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir, self.log_dir = run_dir, log_dir

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def get(self, name: str) -> Managed | None:
        try:
            data = json.loads(self._pidfile(name).read_text())
        except (OSError, ValueError):
            return None
        return Managed(name, int(data["pid"]), str(data["started"]), Path(data["log"]))

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> Managed:
        """Spawn ``argv`` in a session of its own, output appended to ``logs/<name>.log``.

        posix_spawn leaves no Popen object behind: the process outlives this one by design.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        pid = os.posix_spawnp(argv[0], argv, {**os.environ, **(env or {})},
                              file_actions=actions, setsid=True)
        started = _start_time(pid) or ""
        self._pidfile(name).write_text(json.dumps({"pid": pid, "started": started,
                                                   "log": str(log_path), "argv": argv}))
        return Managed(name, pid, started, log_path)

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``timeout``; True if something was stopped."""
        managed = self.get(name)
        self._pidfile(name).unlink(missing_ok=True)
        if managed is None or not managed.alive():
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(managed.pid, sig)
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not managed.alive():
                    self._reap(managed.pid)
                    return True
                time.sleep(0.1)
        return True

    @staticmethod
    def _reap(pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def ensure_port_free(port: int, what: str, fix: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUseError(f"port {port} ({what}) is already in use: {fix}") from None
