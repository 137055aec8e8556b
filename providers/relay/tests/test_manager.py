# Copyright 2026 The tether developers. MIT license.
"""
The relay provider through tether's SessionManager, against the emulator.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import structlog

import tether
from tether.exceptions import (
    InvalidParameterError,
    NotSupportedError,
    ProviderUnavailableError,
    RequestRejectedError,
    SessionExpiredError,
)
from tether.testing import ASGIServer, ManualClock
from tether_relay import RelayProvider
from tether_relay.emulator import RelayEmulator


TOKEN = "relay-secret-token-0123456789"
FAST = {
    "poll_initial": 0.002,
    "poll_max": 0.005,
    "ready_timeout": 5.0,
    "cleanup_timeout": 2.0,
}


def _registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("relay", RelayProvider)
    return registry


@pytest.fixture(name="manager")
async def _manager(
    server: ASGIServer, clock: ManualClock
) -> AsyncIterator[tether.SessionManager]:
    async with tether.SessionManager(
        registry=_registry(),
        config={"relay": {"base_url": server.url, "api_token": TOKEN, **FAST}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    ) as manager:
        yield manager


async def test_create_ping_update_close(
    manager: tether.SessionManager, emulator: RelayEmulator
) -> None:
    """
    The whole lifecycle through the manager: users live in data, never tokens.
    """
    s = await manager.create("relay", users=["1.1.1.1", "8.8.8.8"], labels={"g": "1"})
    health = await manager.ping(s)
    s = await manager.update(s, authorize=["9.9.9.9"], revoke=["8.8.8.8"])
    relay = manager.provider("relay")
    assert isinstance(relay, RelayProvider)
    creds = await relay.credentials(s)
    closed = await manager.close(s)

    assert tether.HealthStatus.ALIVE == health.status
    assert ["1.1.1.1", "9.9.9.9"] == s.data["users"]
    assert creds.token_for("9.9.9.9") is not None
    assert str(creds.token_for("9.9.9.9")) not in repr(s.to_dict())
    assert tether.SessionState.CLOSED == closed.state
    assert [] == emulator.live_sessions()
    assert [s.remote_id] == emulator.deleted_sessions()


async def test_lifetime_expiry_deletes_the_relay(
    manager: tether.SessionManager, emulator: RelayEmulator, clock: ManualClock
) -> None:
    """
    No server TTL: tether's lifetime deletes the relay at the deadline.
    """
    s = await manager.create("relay", users=["1.1.1.1"], lifetime=600)
    await clock.advance(599)
    alive = emulator.live_sessions()
    await clock.advance(2)
    expired = await manager.get(s.id)

    assert [s.remote_id] == alive
    assert s.expires_at is not None
    assert tether.SessionState.EXPIRED == expired.state
    assert [] == emulator.live_sessions()
    with pytest.raises(SessionExpiredError):
        await manager.provider("relay").credentials(expired)  # type: ignore[attr-defined]


async def test_renew_moves_tethers_own_deadline(
    manager: tether.SessionManager, emulator: RelayEmulator, clock: ManualClock
) -> None:
    """
    renew works through the manager (tether's deadline) though the service has none.
    """
    s = await manager.create("relay", users=["1.1.1.1"], lifetime=100)
    await clock.advance(90)
    renewed = await manager.renew(s, lifetime=100)
    await clock.advance(50)

    assert renewed.expires_at is not None
    assert s.expires_at is not None
    assert renewed.expires_at > s.expires_at
    assert [s.remote_id] == emulator.live_sessions()


async def test_bad_parameters_send_nothing(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    Invalid users or updates are refused before any request.
    """
    with pytest.raises(InvalidParameterError):
        await manager.create("relay", users=["192.168.0.10"])
    with pytest.raises(InvalidParameterError):
        await manager.create("relay", users=[])
    with pytest.raises(InvalidParameterError):
        await manager.create("relay", users=["1.1.1.1"], filters=[{"field": "x"}])

    assert [] == server.requests


async def test_bad_update_sends_nothing(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    An invalid update is refused locally, after create's requests only.
    """
    s = await manager.create("relay", users=["1.1.1.1"])
    before = len(server.requests)

    with pytest.raises(InvalidParameterError):
        await manager.update(s, authorize=["not-an-ip"])
    with pytest.raises(InvalidParameterError):
        await manager.update(s, name="x")

    assert before == len(server.requests)


async def test_failed_relay_is_deleted_and_recorded_failed(
    manager: tether.SessionManager, emulator: RelayEmulator
) -> None:
    """
    A relay that fails to become ready leaves nothing billing; create raises.
    """
    emulator.fail_with = "Session failed"

    with pytest.raises(RequestRejectedError, match="Session failed"):
        await manager.create("relay", users=["1.1.1.1"])

    failed = await manager.list(state=tether.SessionState.FAILED)
    assert 1 == len(failed)
    assert [] == emulator.live_sessions()
    assert 1 == len(emulator.deleted_sessions())


async def test_not_ready_in_time_is_retried_without_leaks(
    server: ASGIServer, clock: ManualClock, emulator: RelayEmulator
) -> None:
    """
    Never ready: each attempt deletes its session; the manager retries, then fails.
    """
    emulator.ready_delay = math.inf
    async with tether.SessionManager(
        registry=_registry(),
        config={
            "relay": {
                "base_url": server.url,
                "api_token": TOKEN,
                **FAST,
                "ready_timeout": 0.02,
            }
        },
        retry=tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    ) as manager:
        with pytest.raises(ProviderUnavailableError, match="not ready"):
            await manager.create("relay", users=["1.1.1.1"])

    assert [] == emulator.live_sessions()
    assert 2 == len(emulator.deleted_sessions())


async def test_cancelled_create_leaves_nothing(
    server: ASGIServer, clock: ManualClock, emulator: RelayEmulator
) -> None:
    """
    When the manager's shield bound cancels a waiting create, the relay is deleted.

    The manager shields a create from its caller's cancellation for up to
    ``shield_timeout``; when that bound cancels the provider mid-wait, the
    provider deletes the half-made relay (itself shielded) before unwinding.
    """
    emulator.ready_delay = math.inf
    async with tether.SessionManager(
        registry=_registry(),
        config={"relay": {"base_url": server.url, "api_token": TOKEN, **FAST}},
        retry=tether.RetryPolicy(attempts=1),
        clock=clock,
        health_checks=False,
        environ={},
        shield_timeout=0.2,
    ) as manager:
        with anyio.move_on_after(0.05) as scope:
            await manager.create("relay", users=["1.1.1.1"])
        records = await manager.list()

    assert scope.cancelled_caught
    assert [] == emulator.live_sessions()
    assert 1 == len(emulator.deleted_sessions())
    assert 1 == len(records)
    # The caller was cancelled and the service holds nothing: the intent failed.
    assert tether.SessionState.FAILED == records[0].state


async def test_lost_relay_is_lost(
    manager: tether.SessionManager, emulator: RelayEmulator
) -> None:
    """
    A relay deleted behind tether's back pings GONE: the session becomes LOST.
    """
    s = await manager.create("relay", users=["1.1.1.1"])
    emulator.kill(s.remote_id or "")
    health = await manager.ping(s)

    assert tether.HealthStatus.GONE == health.status
    assert tether.SessionState.LOST == (await manager.get(s.id)).state


async def test_degraded_relay(
    manager: tether.SessionManager, emulator: RelayEmulator
) -> None:
    """
    A relay reporting an error pings DEGRADED, and ACTIVE again once it recovers.
    """
    s = await manager.create("relay", users=["1.1.1.1"])
    emulator.fail(s.remote_id or "", "relay crashed")
    await manager.ping(s)
    current = await manager.get(s.id)

    emulator.recover(s.remote_id or "")
    await manager.ping(s)
    recovered = await manager.get(s.id)

    assert tether.SessionState.DEGRADED == current.state
    assert "relay crashed" in (current.error or "")
    assert tether.SessionState.ACTIVE == recovered.state
    assert recovered.data["error"] is None


async def test_config_from_environment(
    server: ASGIServer, emulator: RelayEmulator, clock: ManualClock
) -> None:
    """
    TETHER_RELAY_* variables configure the provider, booleans included.
    """
    environ = {
        "TETHER_RELAY_BASE_URL": server.url,
        "TETHER_RELAY_API_TOKEN": TOKEN,
        "TETHER_RELAY_ALLOW_PRIVATE_IPS": "true",
        "TETHER_RELAY_POLL_INITIAL": "0.002",
    }
    with structlog.testing.capture_logs() as logs:
        async with tether.SessionManager(
            registry=_registry(),
            clock=clock,
            health_checks=False,
            environ=environ,
            retry=tether.RetryPolicy(attempts=1),
        ) as manager:
            with pytest.raises(RequestRejectedError, match="public address"):
                await manager.create("relay", users=["127.0.0.1"])
            relay: Any = manager.provider("relay")

    assert relay.config.allow_private_ips is True
    assert TOKEN not in repr(relay.config)
    assert TOKEN not in repr(logs)
    assert [] == emulator.live_sessions()


async def test_find_is_not_supported(manager: tether.SessionManager) -> None:
    """
    The service keeps no tag, so the provider cannot find by tether id.
    """
    relay = manager.provider("relay")

    assert relay.capabilities.find is False
    with pytest.raises(NotSupportedError):
        await relay.find("anything")
