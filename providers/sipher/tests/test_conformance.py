"""
The sipher provider passes tether's provider conformance suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether.testing import (
    ConformanceTarget,
    ManualClock,
    ProviderConformanceTests,
    serve_asgi,
)
from tether_sipher import SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


class TestSipherConformance(ProviderConformanceTests):
    """
    The contract, against the Sipher emulator on loopback.
    """

    @pytest.fixture(name="conformance_target")
    async def _conformance_target(self) -> AsyncIterator[ConformanceTarget]:
        clock = ManualClock()
        emulator = SipherEmulator(clock=clock.time)
        async with serve_asgi(emulator.app) as server:
            yield ConformanceTarget(
                clock=clock,
                name="sipher",
                provider=SipherProvider,
                config={"base_url": server.url, "api_key": PRO_KEY, "timeout": 5},
                params={"chain": "solana"},
                update={"privacy_level": "maximum"},
                lifetime=600,
                live=emulator.live_sessions,
                kill=emulator.kill,
            )
