"""
Fixtures for the Sipher provider's tests: a ManualClock, the emulator on a real
loopback socket, and providers bound to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from tether.testing import ASGIServer, ManualClock, serve_asgi
from tether_sipher import SipherConfig, SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    """
    One manual clock shared by the emulator and the provider.
    """
    return ManualClock()


@pytest.fixture(name="emulator")
def _emulator(clock: ManualClock) -> SipherEmulator:
    """
    A fresh emulator on the manual clock.
    """
    return SipherEmulator(clock=clock.time)


@pytest.fixture(name="server")
async def _server(emulator: SipherEmulator) -> AsyncIterator[ASGIServer]:
    """
    The emulator served on a loopback port.
    """
    async with serve_asgi(emulator.app) as server:
        yield server


@pytest.fixture(name="http")
async def _http(server: ASGIServer) -> AsyncIterator[httpx.AsyncClient]:
    """
    A raw client with a pro key, for talking to the emulator directly.
    """
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": PRO_KEY}, timeout=5
    ) as client:
        yield client


ProviderFactory = Callable[..., Any]


@pytest.fixture(name="make_provider")
async def _make_provider(
    server: ASGIServer, clock: ManualClock
) -> AsyncIterator[ProviderFactory]:
    """
    Build providers against the emulator (the test owns nothing to close).
    """
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> SipherProvider:
            fields: dict[str, Any] = {
                "base_url": server.url,
                "api_key": PRO_KEY,
                "timeout": 5,
            }
            fields.update(overrides)
            config = SipherConfig(**fields)
            options = SipherProvider.client_options(config)
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=options.base_url,
                    headers=dict(options.headers),
                    timeout=options.timeout,
                )
            )
            return SipherProvider(
                config, client=client, name="sipher", clock=clock.time
            )

        yield make


@pytest.fixture(name="provider")
async def _provider(make_provider: ProviderFactory) -> SipherProvider:
    """
    A provider with a pro key.
    """
    provider: SipherProvider = await make_provider()
    return provider
