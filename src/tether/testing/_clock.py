"""
A clock that moves only when a test moves it.
"""

from __future__ import annotations

import heapq
import itertools

import anyio
import anyio.lowlevel


class ManualClock:
    """
    A :class:`~tether.Clock` whose time moves only by :meth:`advance`.

    Sleepers wake when the clock passes their deadline, so background work (pings,
    expiry, keepalive) runs at exactly the moments a test chooses, on asyncio and
    on trio alike. Emulators accept it too (``clock=clock.time``), so a session can
    expire on the service and in the manager with no real waiting.

    Args:
        start: The initial time, in seconds since the epoch.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._counter = itertools.count()

    def time(self) -> float:
        """
        The current (manual) time.
        """
        return self._now

    async def sleep(self, seconds: float) -> None:
        """
        Wait until the clock has been advanced by *seconds*.
        """
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(
            self._sleepers, (self._now + seconds, next(self._counter), event)
        )
        await event.wait()

    @property
    def sleepers(self) -> int:
        """
        How many tasks wait on this clock.
        """
        return sum(1 for _, _, e in self._sleepers if not e.is_set())

    async def advance(self, seconds: float) -> None:
        """
        Move time forward by *seconds*, in steps, letting woken tasks run.

        Each sleeper wakes at its own deadline, with the clock showing that
        deadline, and every task runs until it blocks before time moves on.
        """
        if seconds < 0:
            msg = "time cannot go backwards"
            raise ValueError(msg)
        target = self._now + seconds
        await anyio.wait_all_tasks_blocked()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            event.set()
            await anyio.wait_all_tasks_blocked()
        self._now = target
        await anyio.wait_all_tasks_blocked()

    def __repr__(self) -> str:
        return f"ManualClock(time={self._now})"
