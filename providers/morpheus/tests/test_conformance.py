"""
The morpheus provider passes tether's provider conformance suite.
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
from tether_morpheus import MorpheusProvider
from tether_morpheus.emulator import MorpheusEmulator


KEY = "sk-AbC123.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


class TestMorpheusConformance(ProviderConformanceTests):
    """
    The contract, against the Morpheus gateway emulator (v1.14.0) on loopback.
    """

    @pytest.fixture(name="conformance_target")
    async def _conformance_target(self) -> AsyncIterator[ConformanceTarget]:
        clock = ManualClock()
        emulator = MorpheusEmulator(api_keys=[KEY], clock=clock.time)
        async with serve_asgi(emulator.app) as server:
            yield ConformanceTarget(
                clock=clock,
                name="morpheus",
                provider=MorpheusProvider,
                config={"base_url": server.url, "api_key": KEY, "timeout": 5},
                params={"model": "llama-3.3-70b"},
                lifetime=600,
                live=emulator.live_sessions,
                kill=emulator.kill_session,
            )
