"""
The Sipher provider through tether's SessionManager, against the emulator on
one ManualClock shared by manager, provider and emulator.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from tether import HealthStatus, SessionState
from tether.exceptions import (
    AuthError,
    InvalidParameterError,
    NotSupportedError,
    SessionExpiredError,
    SessionLostError,
)
from tether.testing import ASGIServer, ManualClock
from tether_sipher import SipherProvider
from tether_sipher.emulator import FREE_KEY, PRO_KEY, SipherEmulator


VK = "0x" + "5e" * 32
COMPARE = {"operation": "stealth_privacy"}


def _registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sipher", SipherProvider)
    return registry


def _manager(
    server: ASGIServer, clock: ManualClock, **config: Any
) -> tether.SessionManager:
    return tether.SessionManager(
        registry=_registry(),
        config={
            "sipher": {
                "base_url": server.url,
                "api_key": PRO_KEY,
                "timeout": 5,
                **config,
            }
        },
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    )


def _sipher(manager: tether.SessionManager, clock: ManualClock) -> SipherProvider:
    provider = manager.provider("sipher")
    assert isinstance(provider, SipherProvider)
    # The manager does not hand its clock to providers (yet).
    provider.clock = clock.time
    return provider


@pytest.fixture(name="manager")
async def _manager_fixture(
    server: ASGIServer, clock: ManualClock
) -> AsyncIterator[tether.SessionManager]:
    """
    A manager with the sipher provider, background pings off.
    """
    async with _manager(server, clock) as manager:
        _sipher(manager, clock)
        yield manager


async def test_create_ping_update_close(
    manager: tether.SessionManager, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    The whole lifecycle: create with defaults and lifetime, ping alive, update
    merges, close deletes remotely.
    """
    session = await manager.create(
        "sipher",
        lifetime=600,
        labels={"job": "1"},
        chain="solana",
        privacy_level="shielded",
    )
    health = await manager.ping(session)
    updated = await manager.update(
        session, privacy_level="maximum", rpc_provider="helius"
    )
    closed = await manager.close(updated)

    assert session.state is SessionState.ACTIVE
    assert session.params == {"chain": "solana", "privacyLevel": "shielded"}
    assert session.expires_at is not None
    assert session.expires_at.timestamp() == clock.time() + 600
    assert health.status is HealthStatus.ALIVE
    assert updated.data["defaults"] == {
        "chain": "solana",
        "privacyLevel": "maximum",
        "rpcProvider": "helius",
    }
    assert updated.expires_at == session.expires_at
    assert closed.state is SessionState.CLOSED
    assert emulator.live_sessions() == set()


async def test_expiry_with_manual_clock(
    manager: tether.SessionManager, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    At its absolute expiresAt the session expires in the manager and on the
    service, and the bound client then refuses instead of sending.
    """
    session = await manager.create("sipher", lifetime=60, chain="near")
    sipher = _sipher(manager, clock)

    await clock.advance(61)
    current = await manager.get(session.id)

    assert current.state is SessionState.EXPIRED
    assert emulator.live_sessions() == set()
    with pytest.raises(SessionExpiredError):
        async with sipher.bound_client(session) as client:
            await client.post("/v1/backends/compare", json=COMPARE)


async def test_bound_client_from_manager(
    manager: tether.SessionManager, server: ASGIServer, clock: ManualClock
) -> None:
    """
    manager.provider("sipher").bound_client(session) applies the defaults.
    """
    session = await manager.create("sipher", chain="cosmos")

    async with _sipher(manager, clock).bound_client(session) as client:
        response = await client.post("/v1/backends/compare", json=COMPARE)

    assert response.json()["data"]["chain"] == "cosmos"


async def test_lost_session_found_by_ping(
    manager: tether.SessionManager, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    A session the service lost before its deadline becomes LOST on ping, and
    is refused by the bound client.
    """
    session = await manager.create("sipher")
    emulator.restart()

    health = await manager.ping(session)
    current = await manager.get(session.id)

    assert health.status is HealthStatus.GONE
    assert current.state is SessionState.LOST
    with pytest.raises(SessionLostError):
        await _sipher(manager, clock).session_request(
            current, "POST", "/v1/backends/compare", json=COMPARE
        )


async def test_renew_not_supported(manager: tether.SessionManager) -> None:
    """
    Sipher cannot extend a session: renew raises NotSupportedError.
    """
    session = await manager.create("sipher")

    with pytest.raises(NotSupportedError):
        await manager.renew(session, lifetime=600)


async def test_bad_input_sends_nothing(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    Bad defaults and lifetimes are refused before any request.
    """
    with pytest.raises(InvalidParameterError):
        await manager.create("sipher", chain="dogecoin")
    with pytest.raises(InvalidParameterError):
        await manager.create("sipher", lifetime=30)
    with pytest.raises(InvalidParameterError):
        await manager.create("sipher", lifetime=90000)

    assert server.requests == []


async def test_update_ttl_refused(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    An update cannot change the TTL; nothing is sent.
    """
    session = await manager.create("sipher")
    before = server.request_count

    with pytest.raises(InvalidParameterError):
        await manager.update(session, ttlSeconds=7200)

    assert server.request_count == before


async def test_transient_failures_are_retried(
    manager: tether.SessionManager, emulator: SipherEmulator
) -> None:
    """
    A 503 then success: the manager retries the create (Sipher's 5xx are
    classified transient).
    """
    emulator.inject_error(503, "SERVICE_UNAVAILABLE", "Server is shutting down")

    session = await manager.create("sipher")

    assert session.state is SessionState.ACTIVE
    assert emulator.live_sessions() == {session.remote_id}


async def test_rate_limit_is_retried(
    manager: tether.SessionManager, emulator: SipherEmulator, server: ASGIServer
) -> None:
    """
    A 429 RATE_LIMIT_EXCEEDED is retried by the manager.
    """
    emulator.inject_error(
        429, "RATE_LIMIT_EXCEEDED", "Too many requests, please try again later"
    )

    session = await manager.create("sipher")

    assert session.state is SessionState.ACTIVE
    assert [r.path for r in server.requests] == ["/v1/sessions", "/v1/sessions"]


async def test_free_key_is_not_retried(
    server: ASGIServer, clock: ManualClock, emulator: SipherEmulator
) -> None:
    """
    403 TIER_ACCESS_DENIED is permanent: one request, AuthError with the code.
    """
    async with _manager(server, clock, api_key=FREE_KEY) as manager:
        with pytest.raises(AuthError) as info:
            await manager.create("sipher")

    assert info.value.code == "TIER_ACCESS_DENIED"
    assert [r.path for r in server.requests] == ["/v1/sessions"]


async def test_viewing_key_never_stored(
    server: ASGIServer, clock: ManualClock, emulator: SipherEmulator
) -> None:
    """
    Through the manager, the viewing key reaches the service but not the
    session record, its reprs, or the logs.
    """
    import structlog  # noqa: PLC0415

    with structlog.testing.capture_logs() as logs:
        async with _manager(server, clock) as manager:
            session = await manager.create(
                "sipher", chain="solana", default_viewing_key=VK
            )
            updated = await manager.update(session, chain="base")
            record = await manager.get(session.id)

    assert emulator.session_defaults(session.remote_id or "") is None  # closed on exit
    blob = json.dumps(record.to_dict()) + repr(updated) + repr(manager) + repr(logs)
    assert VK not in blob
    assert VK[2:] not in blob
    assert PRO_KEY not in blob
    assert record.data["viewingKeySet"] is True


async def test_env_config(server: ASGIServer, clock: ManualClock) -> None:
    """
    Config fields come from TETHER_SIPHER_* environment variables.
    """
    environ = {
        "TETHER_SIPHER_BASE_URL": server.url,
        "TETHER_SIPHER_API_KEY": PRO_KEY,
        "TETHER_SIPHER_VERIFY_AFTER": "5",
        "TETHER_SIPHER_DEFAULT_VIEWING_KEY": VK,
    }
    async with tether.SessionManager(
        registry=_registry(), clock=clock, health_checks=False, environ=environ
    ) as manager:
        provider = _sipher(manager, clock)
        session = await manager.create("sipher")

    assert provider.config.verify_after == 5
    assert provider.config.default_viewing_key == tether.Secret(VK)
    assert session.data["viewingKeySet"] is True


def test_entry_point_is_installed() -> None:
    """
    The distribution registers "sipher" in the tether.providers group.
    """
    registry = tether.ProviderRegistry()

    assert registry.load("sipher") is SipherProvider
