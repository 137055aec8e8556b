"""
The sandbox provider passes tether's provider conformance suite.
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
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


class TestSandboxConformance(ProviderConformanceTests):
    """
    The contract, against the InstaVM emulator on loopback.
    """

    @pytest.fixture(name="conformance_target")
    async def _conformance_target(self) -> AsyncIterator[ConformanceTarget]:
        clock = ManualClock()
        emulator = SandboxEmulator(api_keys=(KEY,), clock=clock.time)
        async with serve_asgi(emulator.app) as server:
            yield ConformanceTarget(
                clock=clock,
                name="sandbox",
                provider=SandboxProvider,
                config={"base_url": server.url, "api_key": KEY, "timeout": 5},
                # env makes the VM (and its lifetime) start at create, not at
                # the first execute: the expiry check needs a running clock.
                params={"vcpu_count": 2, "env": {"CONFORMANCE": "1"}},
                lifetime=300,
                live=emulator.live_sessions,
                kill=emulator.kill,
            )
