"""
The relay provider passes tether's provider conformance suite.
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
from tether_relay import RelayProvider
from tether_relay.emulator import RelayEmulator


TOKEN = "relay-secret-token-0123456789"


class TestRelayConformance(ProviderConformanceTests):
    """
    The contract, against the Edgegap relay emulator on loopback.
    """

    @pytest.fixture(name="conformance_target")
    async def _conformance_target(self) -> AsyncIterator[ConformanceTarget]:
        clock = ManualClock()
        emulator = RelayEmulator(tokens=(TOKEN,), ready_delay=0.0, clock=clock.time)
        async with serve_asgi(emulator.app) as server:
            yield ConformanceTarget(
                clock=clock,
                name="relay",
                provider=RelayProvider,
                config={"base_url": server.url, "api_token": TOKEN, "timeout": 5},
                params={"users": ["1.1.1.1"]},
                update={"authorize": ["9.9.9.9"]},
                live=emulator.live_sessions,
                kill=emulator.kill,
            )
