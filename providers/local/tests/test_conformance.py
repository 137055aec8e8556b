"""
The local provider passes tether's provider conformance suite, on real kernels.
"""

from __future__ import annotations

from typing import Any

import pytest

from tether.testing import ConformanceTarget, ManualClock, ProviderConformanceTests
from tether_local import LocalProvider

from .conftest import NO_BWRAP, session_processes


def _live(state_dir: str) -> Any:
    from pathlib import Path  # noqa: PLC0415

    def live() -> list[str]:
        # Ground truth is the process table: sessions with a process running.
        return [
            path.stem
            for path in Path(state_dir).glob("*.json")
            if session_processes(path.stem)
        ]

    return live


def _kill(remote_id: str) -> None:
    import contextlib  # noqa: PLC0415
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    # Killing bubblewrap takes the kernel with it (--die-with-parent), so a
    # later pid in the list may already be gone; that is the outcome asked for.
    for pid in session_processes(remote_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # The kill is the service's act: wait until the process table agrees, so
    # the next ping sees a session that is gone rather than one dying.
    deadline = time.monotonic() + 30.0
    while session_processes(remote_id) and time.monotonic() < deadline:
        time.sleep(0.05)


class TestLocalConformance(ProviderConformanceTests):
    """
    The contract, against kernels on this machine (isolated where bubblewrap is).
    """

    @pytest.fixture(name="conformance_target")
    def _conformance_target(self, dirs: dict[str, str]) -> ConformanceTarget:
        return ConformanceTarget(
            clock=ManualClock(),
            name="local",
            provider=LocalProvider,
            config=dirs,
            params={
                "memory_mb": 512,
                "isolation": "none" if NO_BWRAP else "bwrap",
            },
            lifetime=300,
            live=_live(dirs["state_dir"]),
            kill=_kill,
        )

    # Each create starts a kernel (about a second): two points of
    # cancellation, not five, keep the suite's time modest.
    @pytest.mark.parametrize("delay", [0.0, 0.01])
    async def test_cancellation_leaks_nothing(
        self, conformance_target: ConformanceTarget, delay: float
    ) -> None:
        """
        Cancelling create and close at two points leaves no kernel running.
        """
        await super().test_cancellation_leaks_nothing(conformance_target, delay)
