"""
The Morpheus provider through tether's SessionManager, over the emulator:
create by model name, hex id and bid; one session per key; ping detecting a
session the node lost; expiry with a shared ManualClock; chat streaming on a
live session; the failover recipe; and lease mode.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

import tether
from tether import (
    AdmissionPolicy,
    FailoverPolicy,
    HealthStatus,
    ProviderRegistry,
    RetryPolicy,
    SessionState,
)
from tether.exceptions import AdmissionError, RemoteNotFoundError
from tether.testing import serve_asgi
from tether_morpheus import MorpheusProvider, join_content
from tether_morpheus.emulator import MorpheusEmulator, model_id_for

from .conftest import KEY


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def _manager(url, clock, **kwargs):
    registry = ProviderRegistry(entry_points=False)
    registry.register("morpheus", MorpheusProvider)
    return tether.SessionManager(
        registry=registry,
        config={"morpheus": {"base_url": url, "api_key": KEY, "timeout": 5}},
        retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        **kwargs,
    )


@pytest.fixture(name="manager")
async def _manager_fixture(server, clock) -> AsyncIterator[tether.SessionManager]:
    """
    A manager with the Morpheus provider, sharing the emulator's manual clock.
    """
    async with _manager(
        server.url, clock, admission=AdmissionPolicy(mode="reject")
    ) as manager:
        yield manager


def _modelsession_calls(emulator):
    return [r for r in emulator.requests_log if r[1] == "/api/v1/session/modelsession"]


@pytest.mark.parametrize("how", ["name", "hex", "bid"])
async def test_create_ping_close(manager, emulator, clock, how):
    """
    A session made by model name, hex id or bid is ACTIVE with the gateway's id,
    pings ALIVE, and closes on the gateway.
    """
    if how == "name":
        params = {"model": "llama-3.3-70b"}
    elif how == "hex":
        params = {"model": model_id_for("llama-3.3-70b")}
    else:
        params = {"bid_id": emulator.bids_for("llama-3.3-70b")[1]}

    s = await manager.create("morpheus", lifetime=600, **params)
    health = await manager.ping(s)
    closed = await manager.close(s)

    assert s.state is SessionState.ACTIVE
    assert s.remote_id is not None
    assert s.remote_id.startswith("0x")
    assert s.expires_at == s.created_at + timedelta(seconds=600)
    assert health.status is HealthStatus.ALIVE
    assert closed.state is SessionState.CLOSED
    assert emulator.active_session_for(KEY) is None
    assert emulator.live_sessions() == []


async def test_unknown_model_fails_and_frees_the_slot(manager, emulator):
    """
    An unknown model fails the create (FAILED, typed) without opening anything,
    and the key's one slot stays free.
    """
    with pytest.raises(RemoteNotFoundError):
        await manager.create("morpheus", model="llama-nope")
    s = await manager.create("morpheus", model="mistral-31-24b")

    assert s.state is SessionState.ACTIVE
    assert len(_modelsession_calls(emulator)) == 1


async def test_one_session_per_key(manager, emulator):
    """
    A second create on a key holding a live session is refused by admission:
    the gateway never sees a second create.
    """
    first = await manager.create("morpheus", model="llama-3.3-70b")

    with pytest.raises(AdmissionError):
        await manager.create("morpheus", model="mistral-31-24b")
    with pytest.raises(AdmissionError):
        await manager.create("morpheus", bid_id=emulator.bids_for("llama-3.3-70b")[0])

    assert len(_modelsession_calls(emulator)) == 1
    assert not any(r[1] == "/api/v1/session/bidsession" for r in emulator.requests_log)
    assert emulator.active_session_for(KEY) == first.remote_id


async def test_ping_detects_killed_session(manager, emulator):
    """
    When the node loses the session, the next ping is GONE and the session LOST;
    the key can then hold a new session.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b")
    emulator.kill_session(s.remote_id)

    health = await manager.ping(s)
    lost = await manager.get(s.id)
    again = await manager.create("morpheus", model="llama-3.3-70b")

    assert health.status is HealthStatus.GONE
    assert lost.state is SessionState.LOST
    assert "500 Internal Server Error" in (lost.error or "")
    assert again.remote_id != s.remote_id


async def test_expiry_closes_without_early_close(manager, emulator, clock):
    """
    At its deadline (ManualClock shared with the emulator) the session expires;
    the gateway only marks it inactive, so no stake is locked by an early close.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b", lifetime=120)

    await clock.advance(121)
    expired = await manager.get(s.id)

    assert expired.state is SessionState.EXPIRED
    assert emulator.active_session_for(KEY) is None
    assert emulator.locked_stakes == []


async def test_ping_after_gateway_expiry(manager, emulator, clock):
    """
    A ping that finds the session expired moves it to EXPIRED.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b", lifetime=600)
    # The gateway's row expires first (e.g. a shorter session adopted from the key).
    for row in emulator._rows:
        row.expires_at = clock.time() - 1

    health = await manager.ping(s)

    assert health.status is HealthStatus.EXPIRED
    assert (await manager.get(s.id)).state is SessionState.EXPIRED


async def test_chat_streams_on_live_session(manager):
    """
    A holder of a live session streams a chat completion through the provider.
    """
    s = await manager.create("morpheus", model="llama-3.3-70b")
    provider = manager.provider("morpheus")

    stream = await provider.chat(
        s, [{"role": "user", "content": "stream me"}], stream=True
    )
    async with stream:
        chunks = [c async for c in stream]
    reply = await provider.chat(s, [{"role": "user", "content": "json"}])

    assert join_content(chunks) == "echo: stream me"
    assert reply.content == "echo: json"


async def test_failover_recipe(manager, emulator):
    """
    The documented recipe: bids best first, then another model. With the best
    bid's provider refusing, the session lands on the next bid.
    """
    bids = emulator.bids_for("llama-3.3-70b")
    emulator.fail_provider(emulator.bid_provider(bids[0]))
    provider = manager.provider("morpheus")

    candidates = await provider.failover_candidates(
        "llama-3.3-70b", fallback_models=["mistral-31-24b"]
    )
    s = await manager.create(
        FailoverPolicy(candidates=candidates, attempts_per_candidate=1)
    )

    assert s.params["bid_id"] == bids[1]
    assert emulator.active_session_for(KEY) == s.remote_id
    assert bids[0] not in await provider.candidates("llama-3.3-70b")


async def test_lease_mode_through_manager(clock):
    """
    Against today's gateway (no session routes) the manager gets a lease:
    create, ping ALIVE, chat by model, close, and the key slot is freed.
    """
    emulator = MorpheusEmulator(
        clock=clock.time, api_keys=[KEY], session_endpoints=False
    )
    async with (
        serve_asgi(emulator.app) as server,
        _manager(server.url, clock) as manager,
    ):
        s = await manager.create("morpheus", model="llama-3.3-70b", lifetime=300)
        health = await manager.ping(s)
        reply = await manager.provider("morpheus").chat(
            s, [{"role": "user", "content": "hi"}]
        )
        closed = await manager.close(s)
        again = await manager.create("morpheus", model="mistral-31-24b")

    assert s.remote_id == f"lease:{s.id}"
    assert s.data["mode"] == "lease"
    assert health.status is HealthStatus.ALIVE
    assert reply.content == "echo: hi"
    assert closed.state is SessionState.CLOSED
    assert again.state is SessionState.ACTIVE


def test_entry_point_is_installed():
    """
    The distribution registers ``morpheus`` in the ``tether.providers`` group.
    """
    registry = ProviderRegistry()

    assert "morpheus" in registry.names()
    assert registry.load("morpheus") is MorpheusProvider
