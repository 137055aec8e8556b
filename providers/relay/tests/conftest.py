# Copyright 2026 The tether developers. MIT license.
"""
Fixtures of the relay provider's tests: an emulator on a real loopback port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tether import Session, SessionState
from tether.abc import CreateRequest, RemoteSession
from tether.testing import ASGIServer, ManualClock, serve_asgi
from tether_relay import RelayConfig, RelayProvider
from tether_relay.emulator import RelayEmulator


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


TOKEN = "relay-secret-token-0123456789"

#: Fast polling, so tests never wait long in real time.
FAST = {
    "poll_initial": 0.002,
    "poll_max": 0.005,
    "ready_timeout": 5.0,
    "cleanup_timeout": 2.0,
}


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="emulator")
def _emulator(clock: ManualClock) -> RelayEmulator:
    return RelayEmulator(clock=clock.time, tokens=(TOKEN,), ready_delay=0.0)


@pytest.fixture(name="server")
async def _server(emulator: RelayEmulator) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(emulator.app) as server:
        yield server


@pytest.fixture(name="http")
async def _http(server: ASGIServer) -> AsyncIterator[httpx.AsyncClient]:
    """
    A raw client for the emulator, authenticated like the provider.
    """
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"token {TOKEN}"}
    ) as client:
        yield client


@pytest.fixture(name="make_provider")
async def _make_provider(
    server: ASGIServer,
) -> AsyncIterator[Callable[..., RelayProvider]]:
    clients: list[httpx.AsyncClient] = []

    def make(**overrides: Any) -> RelayProvider:
        settings: dict[str, Any] = {
            "base_url": server.url,
            "api_token": TOKEN,
            **FAST,
            **overrides,
        }
        config = RelayConfig(**settings)
        options = RelayProvider.client_options(config)
        client = httpx.AsyncClient(
            base_url=options.base_url,
            headers=dict(options.headers),
            timeout=options.timeout,
        )
        clients.append(client)
        return RelayProvider(config, client=client, name="relay")

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(name="provider")
def _provider(make_provider: Callable[..., RelayProvider]) -> RelayProvider:
    return make_provider()


@pytest.fixture(name="new_request")
def _new_request() -> Callable[..., CreateRequest]:
    """
    Build a create request with params validated by a provider.
    """

    def build(provider: RelayProvider, **params: Any) -> CreateRequest:
        return CreateRequest(tether_id="tether-1", params=provider.parse_create(params))

    return build


@pytest.fixture(name="as_session")
def _as_session() -> Callable[..., Session]:
    """
    Turn a provider's RemoteSession into the Session value the manager keeps.
    """

    def build(
        remote: RemoteSession, state: SessionState = SessionState.ACTIVE
    ) -> Session:
        return Session(
            id="tether-1",
            provider="relay",
            state=state,
            remote_id=remote.id,
            raw_state=remote.raw_state,
            data=remote.data,
        )

    return build
