"""
Fixtures for the sandbox provider's tests: a manual clock, the emulator served
on a real loopback socket, a raw HTTP client and the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tether.testing import ASGIServer, ManualClock, serve_asgi
from tether_sandbox import SandboxConfig, SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


KEY = "instavm_sk_test_9f8e7d6c5b4a"
OTHER_KEY = "instavm_sk_other_112233445566"


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    """
    One manual clock for the emulator (and the manager, where used).
    """
    return ManualClock()


@pytest.fixture(name="emulator")
def _emulator(clock: ManualClock) -> SandboxEmulator:
    """
    An emulator that accepts two keys and reads the manual clock.
    """
    return SandboxEmulator(clock=clock.time, api_keys=(KEY, OTHER_KEY))


@pytest.fixture(name="server")
async def _server(emulator: SandboxEmulator) -> AsyncIterator[ASGIServer]:
    """
    The emulator on a real loopback port.
    """
    async with serve_asgi(emulator.app) as server:
        yield server


@pytest.fixture(name="http")
async def _http(server: ASGIServer) -> AsyncIterator[httpx.AsyncClient]:
    """
    A raw client carrying the test key as ``X-API-Key``.
    """
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": KEY}, timeout=5
    ) as client:
        yield client


@pytest.fixture(name="config")
def _config(server: ASGIServer) -> SandboxConfig:
    """
    Provider config pointing at the emulator.
    """
    return SandboxConfig(base_url=server.url, api_key=KEY, timeout=5)


@pytest.fixture(name="provider")
async def _provider(config: SandboxConfig) -> AsyncIterator[SandboxProvider]:
    """
    The provider with a client built from its own client options.
    """
    options = SandboxProvider.client_options(config)
    async with httpx.AsyncClient(
        base_url=options.base_url,
        headers=dict(options.headers),
        timeout=options.timeout,
    ) as client:
        yield SandboxProvider(config, client=client, name="sandbox")
