"""Cut a request's wait on the engine from outside: the kill switch, the client leaving.

The gateway used to race every engine call and every stream chunk against the kill
switch with ``asyncio.wait`` over fresh futures; creating those futures and tasks cost
more CPU than the chunk itself. Now the request's own task waits, and whoever needs
it stopped cancels that task through ``fire(reason)``; the guarded block turns that
cancellation back into a reason with ``settle()``. Deadlines use one
``asyncio.timeout`` rescheduled per chunk.

Only cancellations fired here are absorbed: a cancellation from elsewhere (server
shutdown) propagates, and ``disarm()`` at the end of the guarded block makes a late
``fire`` a no-op, so a cut can never land outside the block that expects it.
"""

from __future__ import annotations

import asyncio


class Interrupt:
    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "Interrupt() must be created inside a task"
        self._task = task
        self._armed = True
        self.reason: str | None = None

    def fire(self, reason: str) -> None:
        if self._armed and self.reason is None:
            self.reason = reason
            self._task.cancel()

    def settle(self) -> str | None:
        """In ``except CancelledError``: the reason if the cut was ours (then re-raise on None)."""
        if self.reason is not None:
            self._task.uncancel()
        return self.reason

    def disarm(self) -> None:
        self._armed = False
