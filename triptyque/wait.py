"""The one readiness poll: wait on a condition, never on a fixed sleep."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold in time; the message says what was awaited."""


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    abort: Callable[[], str | None] | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    ``abort`` returns a reason to give up at once (a process that died);
    ``on_wait`` is told the seconds waited so far after each miss.
    """
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value
        if abort is not None and (why := abort()):
            raise WaitTimeout(f"{what}: {why}")
        waited = time.monotonic() - started
        if waited > timeout:
            raise WaitTimeout(f"{what}: not within {timeout:g} s")
        if on_wait is not None:
            on_wait(waited)
        time.sleep(interval)


def http_ok(url: str, *, timeout: float = 2.0) -> Callable[[], bool]:
    """A check that ``url`` answers 200."""

    def check() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=timeout).status_code == 200
        return False

    return check


def wait_http(url: str, *, timeout: float, interval: float = 0.1,
              abort: Callable[[], str | None] | None = None,
              on_wait: Callable[[float], None] | None = None) -> float:
    """Wait until ``url`` answers 200; return the seconds it took."""
    started = time.monotonic()
    wait_until(http_ok(url), timeout=timeout, what=f"{url} answering 200", interval=interval, abort=abort,
               on_wait=on_wait)
    return time.monotonic() - started
