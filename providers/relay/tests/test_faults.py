# Copyright 2026 The tether developers. MIT license.
"""
A create whose answer is lost after the service acted is never repeated blindly.

An ASGI middleware in front of the emulator lets the create happen, then drops
the answer (a reset) or replaces it with a gateway's 502 or 504; the emulator's
``live_sessions()`` is the ground truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

import tether
from tether import SessionState
from tether.testing import (
    ASGIServer,
    LoseAnswer,
    ManualClock,
    serve_asgi,
)
from tether_relay import RelayProvider
from tether_relay.emulator import RelayEmulator


TOKEN = "relay-secret-token-0123456789"
FAST = {
    "poll_initial": 0.002,
    "poll_max": 0.005,
    "ready_timeout": 5.0,
    "cleanup_timeout": 2.0,
}


@pytest.fixture(name="lose")
def _lose(emulator: RelayEmulator) -> LoseAnswer:
    return LoseAnswer(emulator.app, "POST", "/v1/relays/sessions", "502")


@pytest.fixture(name="server")
async def _server(lose: LoseAnswer) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(lose) as server:
        yield server


def _manager(server: ASGIServer, clock: ManualClock) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("relay", RelayProvider)
    return tether.SessionManager(
        registry=registry,
        config={"relay": {"base_url": server.url, "api_token": TOKEN, **FAST}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        on_exit="keep",
    )


@pytest.mark.parametrize("how", ["502", "504", "reset"])
async def test_lost_create_answer_is_found_not_repeated(
    server: ASGIServer,
    clock: ManualClock,
    emulator: RelayEmulator,
    lose: LoseAnswer,
    how: str,
) -> None:
    """
    The one session the service made is found in its list (by its users) and
    tracked; no second create is sent.
    """
    lose.how = how
    async with _manager(server, clock) as manager:
        session = await manager.create("relay", users=["1.1.1.1", "8.8.8.8"])
        tracked = await manager.list(provider="relay")
    creates = [r for r in emulator.received if r[:2] == ("POST", lose.path)]

    assert lose.lost == 1
    assert len(creates) == 1
    assert emulator.live_sessions() == [session.remote_id]
    assert [(s.remote_id, s.state) for s in tracked] == [
        (session.remote_id, SessionState.ACTIVE)
    ]


async def test_lost_create_answer_waits_for_the_session_to_show_its_users(
    server: ASGIServer,
    clock: ManualClock,
    emulator: RelayEmulator,
    lose: LoseAnswer,
) -> None:
    """
    A relay shows its users only once ready: the provider lets the sessions
    still initializing settle before the manager looks in the list.
    """
    emulator.ready_delay = 30.0

    async def advance_soon() -> None:
        # The relay becomes ready while the provider watches the list.
        await anyio.sleep(0.05)
        await clock.advance(30)

    async with _manager(server, clock) as manager, anyio.create_task_group() as tg:
        tg.start_soon(advance_soon)
        session = await manager.create("relay", users=["1.1.1.1"])
        tracked = await manager.list(provider="relay")
    creates = [r for r in emulator.received if r[:2] == ("POST", lose.path)]

    assert len(creates) == 1
    assert emulator.live_sessions() == [session.remote_id]
    assert [s.remote_id for s in tracked] == [session.remote_id]
