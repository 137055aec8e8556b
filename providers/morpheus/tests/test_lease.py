"""
Leases on today's gateway (no session routes), through tether's manager and
the emulator: create checks the key and the balance, ended leases refuse chat
before sending, failover candidates are models, a lease's health comes from
what its chats see (so failover moves it to the next model), and one key holds
several leases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog

import tether
from tether import (
    AdmissionPolicy,
    FailoverPolicy,
    HealthStatus,
    ProviderRegistry,
    RetryPolicy,
    SessionState,
)
from tether.exceptions import (
    AuthError,
    ConfigError,
    PermanentProviderError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    SessionClosedError,
    SessionExpiredError,
    SessionLostError,
)
from tether.testing import serve_asgi
from tether_morpheus import MorpheusConfig, MorpheusProvider, join_content
from tether_morpheus.emulator import MorpheusEmulator, model_id_for

from .conftest import KEY


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


WRONG = KEY[:-4] + "0000"
HI = [{"role": "user", "content": "hi"}]
CHAT = "/api/v1/chat/completions"


@pytest.fixture(name="today")
def _today(clock) -> MorpheusEmulator:
    """
    Today's gateway, sharing the manual clock.
    """
    return MorpheusEmulator(clock=clock.time, api_keys=[KEY], session_endpoints=False)


@pytest.fixture(name="url")
async def _url(today) -> AsyncIterator[str]:
    """
    Today's gateway on a loopback port.
    """
    async with serve_asgi(today.app) as server:
        yield server.url


def _manager(url, clock, *, key=KEY, attempts=2, **kwargs):
    registry = ProviderRegistry(entry_points=False)
    registry.register("morpheus", MorpheusProvider)
    return tether.SessionManager(
        registry=registry,
        config={"morpheus": {"base_url": url, "api_key": key, "timeout": 5}},
        retry=RetryPolicy(attempts=attempts, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        **kwargs,
    )


@pytest.fixture(name="manager")
async def _manager_fixture(url, clock) -> AsyncIterator[tether.SessionManager]:
    """
    A manager over today's gateway (mode auto-detected), admission ``reject``.
    """
    async with _manager(url, clock, admission=AdmissionPolicy(mode="reject")) as m:
        yield m


async def _chat_once(provider, session, *, stream):
    if not stream:
        return (await provider.chat(session, HI)).content
    async with await provider.chat(session, HI, stream=True) as chunks:
        return join_content([c async for c in chunks])


def _chats(emulator):
    return [r for r in emulator.requests_log if r[1] == CHAT]


# -- 1. create checks the key ------------------------------------------------------


async def test_lease_create_refuses_a_wrong_key(url, clock, today):
    """
    A wrong secret fails the create (AuthError, FAILED) through the billing
    balance, before any chat; the key shows nowhere.
    """
    with structlog.testing.capture_logs() as logs:
        async with _manager(url, clock, key=WRONG) as manager:
            with pytest.raises(AuthError) as info:
                await manager.create("morpheus", model="llama-3.3-70b")
            sessions = await manager.list()

    assert [SessionState.FAILED] == [s.state for s in sessions]
    assert any(r[1] == "/api/v1/billing/balance" for r in today.requests_log)
    assert [] == _chats(today)
    for text in (str(info.value), repr(info.value.body), repr(logs)):
        assert WRONG not in text
        assert WRONG[10:] not in text


async def test_lease_create_refuses_an_empty_balance(manager, today):
    """
    An account with no credit fails the create (code ``insufficient_balance``).
    """
    today.set_balance(0)

    with pytest.raises(PermanentProviderError) as info:
        await manager.create("morpheus", model="llama-3.3-70b")

    assert "insufficient_balance" == info.value.code


# -- 2. an ended lease refuses chat ---------------------------------------------------


async def test_closed_lease_refuses_chat(manager, today):
    """
    After ``close(s)``, chat on the object create returned raises
    SessionClosedError and sends nothing.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b")
    await manager.close(s)
    provider = manager.provider("morpheus")

    with pytest.raises(SessionClosedError):
        await provider.chat(s, HI)
    with pytest.raises(SessionClosedError):
        await provider.chat(s, HI, stream=True)

    assert [] == _chats(today)


async def test_expired_lease_refuses_chat(manager, today, clock):
    """
    Past its deadline, a lease refuses chat (SessionExpiredError), unsent.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b", lifetime=60)
    await clock.advance(61)

    with pytest.raises(SessionExpiredError):
        await manager.provider("morpheus").chat(s, HI)

    assert SessionState.EXPIRED is (await manager.get(s.id)).state
    assert [] == _chats(today)


# -- 3. failover candidates are models ------------------------------------------------------


async def test_lease_failover_candidates_are_models(url, clock, today):
    """
    In lease mode the candidates are the model, then the fallbacks (no bids),
    so with 2 bids and ``attempts=2`` an unusable model still falls back.
    """
    today.add_model("duo", bids=[("a", 1, 0.9), ("b", 1, 0.8)])
    async with _manager(url, clock, attempts=2) as manager:
        provider = manager.provider("morpheus")
        candidates = await provider.failover_candidates(
            "duo", fallback_models=["mistral-31-24b"]
        )
        today._models[model_id_for("duo")]["IsDeleted"] = True
        s = await manager.create(
            FailoverPolicy(candidates=candidates, attempts_per_candidate=1)
        )

    assert [{"model": "duo"}, {"model": "mistral-31-24b"}] == [
        dict(c.params) for c in candidates
    ]
    assert "mistral-31-24b" == s.params["model"]


# -- 4 and 6. health from chats; failover across models ------------------------------------


@pytest.mark.parametrize(
    ("fault", "stream", "error"),
    [
        ("provider_closed_connection", False, ProviderUnavailableError),
        ("provider_closed_connection", True, ProviderUnavailableError),
        ("proxy_error", True, ProviderUnavailableError),
        ("session_not_found", False, RemoteNotFoundError),
        ("session_not_found", True, RemoteNotFoundError),
    ],
)
async def test_failed_chats_degrade_the_lease(manager, today, fault, stream, error):
    """
    A chat the pool fails makes the lease's next ping DEGRADED; a good chat
    makes it ALIVE again.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b")
    provider = manager.provider("morpheus")
    today.fail_model("llama-3.3-70b", fault)

    with pytest.raises(error):
        await _chat_once(provider, s, stream=stream)
    degraded = await manager.ping(s)
    today.clear_model_faults()
    await provider.chat(s, HI)
    recovered = await manager.ping(s)

    assert HealthStatus.DEGRADED is degraded.status
    assert HealthStatus.ALIVE is recovered.status
    assert SessionState.ACTIVE is (await manager.get(s.id)).state


async def test_renewed_pool_session_is_healthy(manager, today):
    """
    ``session expired`` is renewed by the gateway itself: the chat succeeds and
    the lease stays ALIVE.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b")
    today.fail_model("llama-3.3-70b", "session_expired")

    reply = await manager.provider("morpheus").chat(s, HI)
    health = await manager.ping(s)

    assert "echo: hi" == reply.content
    assert 1 == today.pool_renewals
    assert HealthStatus.ALIVE is health.status


async def test_lost_pool_session_heals_after_cleanup(manager, today, clock):
    """
    A lost pool session fails every chat (``session_not_found``) until the
    gateway's cleanup; a retry after it succeeds and the lease recovers.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b")
    provider = manager.provider("morpheus")
    today.fail_model("llama-3.3-70b", "session_not_found", until=clock.time() + 60)

    for _ in range(2):
        with pytest.raises(RemoteNotFoundError) as info:
            await provider.chat(s, HI)
    degraded = await manager.ping(s)
    await clock.advance(61)
    reply = await provider.chat(s, HI)
    health = await manager.ping(s)

    assert "session_not_found" == info.value.code
    assert HealthStatus.DEGRADED is degraded.status
    assert "echo: hi" == reply.content
    assert HealthStatus.ALIVE is health.status


@pytest.mark.parametrize("fault", ["provider_closed_connection", "session_not_found"])
async def test_failover_moves_the_lease_to_the_next_model(manager, today, fault):
    """
    When the pool keeps failing model B, the lease pings GONE, becomes LOST,
    and ``recreate_lost`` opens one on the next model; the old object then
    refuses chat without sending.
    """
    provider = manager.provider("morpheus")
    candidates = await provider.failover_candidates(
        "llama-3.3-70b", fallback_models=["mistral-31-24b"]
    )
    s = await manager.create(
        FailoverPolicy(candidates=candidates, recreate_lost=True), lifetime=600
    )
    today.fail_model("llama-3.3-70b", fault)

    healths = []
    for _ in range(3):
        with pytest.raises((ProviderUnavailableError, RemoteNotFoundError)):
            await provider.chat(s, HI)
        healths.append((await manager.ping(s)).status)
    lost = await manager.get(s.id)
    new = await manager.get(lost.data["replaced_by"])
    sent = len(_chats(today))
    with pytest.raises(SessionLostError):
        await provider.chat(s, HI)
    reply = await provider.chat(new, HI)

    assert [HealthStatus.DEGRADED, HealthStatus.DEGRADED, HealthStatus.GONE] == healths
    assert SessionState.LOST is lost.state
    assert SessionState.ACTIVE is new.state
    assert "mistral-31-24b" == new.params["model"]
    assert "echo: hi" == reply.content
    assert sent + 1 == len(_chats(today))
    assert "mistral-31-24b" == _chats(today)[-1][3]["model"]


# -- 5. one key, several leases ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reject", "replace"])
async def test_one_key_holds_several_leases(url, clock, today, mode):
    """
    Today's gateway has no per-key session: two models lease on one key at
    once, under any admission mode, and both chat.
    """
    async with _manager(url, clock, admission=AdmissionPolicy(mode=mode)) as manager:
        first = await manager.create("morpheus", model="llama-3.3-70b")
        second = await manager.create("morpheus", model="mistral-31-24b")
        provider = manager.provider("morpheus")
        replies = [await provider.chat(s, HI) for s in (first, second)]
        stream = await provider.chat(first, HI, stream=True)
        async with stream:
            text = join_content([c async for c in stream])
        states = [(await manager.get(s.id)).state for s in (first, second)]

    assert [SessionState.ACTIVE, SessionState.ACTIVE] == states
    assert ["echo: hi", "echo: hi"] == [r.content for r in replies]
    assert "echo: hi" == text
    assert provider.capabilities.max_sessions_per_credential is None
    assert MorpheusProvider.capabilities.max_sessions_per_credential == 1


# -- the pieces ---------------------------------------------------------------------------------


async def test_balance_is_none_without_billing(client):
    """
    A gateway without billing (v1.14.0) gives no balance instead of failing.
    """
    assert await client.balance() is None


@pytest.mark.parametrize("value", [0, -1, True, "3"])
def test_lease_failures_before_lost_is_checked(value):
    """
    ``lease_failures_before_lost`` must be a positive integer.
    """
    with pytest.raises(ConfigError):
        MorpheusConfig(api_key=KEY, lease_failures_before_lost=value)
