"""
Time, as the manager sees it: a seam so tests can move it by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import anyio


class Clock(Protocol):
    """
    Where the manager reads the time and waits.

    :class:`tether.testing.ManualClock` implements it for tests that must not sleep.
    """

    def time(self) -> float:
        """
        Seconds since the epoch.
        """
        ...

    async def sleep(self, seconds: float) -> None:
        """
        Wait *seconds* (cancellable).
        """
        ...


class SystemClock:
    """
    The real time, and :func:`anyio.sleep`.
    """

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


def to_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
