"""
Fixtures for the Morpheus provider's tests: a manual clock, the v1.14.0 emulator
on a real loopback socket, the typed client and the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tether.testing import ASGIServer, ManualClock, serve_asgi
from tether_morpheus import MorpheusClient, MorpheusConfig, MorpheusProvider
from tether_morpheus.emulator import MorpheusEmulator


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


KEY = "sk-AbC123.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
OTHER_KEY = "sk-ZyX987.fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765432"


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    """
    One manual clock for the emulator (and the manager, where used).
    """
    return ManualClock()


@pytest.fixture(name="emulator")
def _emulator(clock: ManualClock) -> MorpheusEmulator:
    """
    A v1.14.0 gateway that accepts two keys of one user and reads the manual clock.
    """
    return MorpheusEmulator(clock=clock.time, api_keys=(KEY, OTHER_KEY))


@pytest.fixture(name="server")
async def _server(emulator: MorpheusEmulator) -> AsyncIterator[ASGIServer]:
    """
    The emulator on a real loopback port.
    """
    async with serve_asgi(emulator.app) as server:
        yield server


def make_http(server: ASGIServer, key: str = KEY) -> httpx.AsyncClient:
    """
    An HTTP client built the way the manager builds it from client_options.
    """
    options = MorpheusProvider.client_options(
        MorpheusConfig(base_url=server.url, api_key=key, timeout=5)
    )
    return httpx.AsyncClient(
        base_url=options.base_url,
        headers=dict(options.headers),
        timeout=options.timeout,
    )


@pytest.fixture(name="http")
async def _http(server: ASGIServer) -> AsyncIterator[httpx.AsyncClient]:
    """
    The provider's HTTP client, carrying ``Authorization: Bearer sk-...``.
    """
    async with make_http(server) as client:
        yield client


@pytest.fixture(name="client")
def _client(http: httpx.AsyncClient) -> MorpheusClient:
    """
    The typed gateway client over the test key.
    """
    return MorpheusClient(http)


@pytest.fixture(name="provider")
def _provider(server: ASGIServer, http: httpx.AsyncClient) -> MorpheusProvider:
    """
    The provider, used directly (without a manager), mode auto-detected.
    """
    config = MorpheusConfig(base_url=server.url, api_key=KEY, timeout=5)
    return MorpheusProvider(config, client=http, name="morpheus")
