"""
A create whose answer is lost after the service acted is never repeated blindly.

An ASGI middleware in front of the emulator lets the create happen, then drops
the answer (a reset) or replaces it with a gateway's 502 or 504; the emulator's
``live_sessions()`` is the ground truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import tether
from tether import SessionState
from tether.exceptions import OutcomeUnknownError
from tether.testing import (
    ASGIServer,
    LoseAnswer,
    ManualClock,
    serve_asgi,
)
from tether_sipher import SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


@pytest.fixture(name="lose")
def _lose(emulator: SipherEmulator) -> LoseAnswer:
    return LoseAnswer(emulator.app, "POST", "/v1/sessions", "502")


@pytest.fixture(name="server")
async def _server(lose: LoseAnswer) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(lose) as server:
        yield server


@pytest.mark.parametrize("how", ["502", "504", "reset"])
async def test_lost_create_answer_stays_unknown_and_is_not_repeated(
    server: ASGIServer,
    clock: ManualClock,
    emulator: SipherEmulator,
    lose: LoseAnswer,
    how: str,
) -> None:
    """
    Sipher can neither find nor list sessions: the create is not sent again,
    OutcomeUnknownError is raised and the record is kept CREATING for
    reconcile; the one session the service made ends at its TTL.
    """
    lose.how = how
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sipher", SipherProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"sipher": {"base_url": server.url, "api_key": PRO_KEY, "timeout": 5}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        on_exit="keep",
    ) as manager:
        with pytest.raises(OutcomeUnknownError):
            await manager.create("sipher", chain="solana", lifetime=120)
        tracked = await manager.list(provider="sipher")
        live = emulator.live_sessions()
        await clock.advance(121)

    assert lose.lost == 1
    assert len(live) == 1
    assert [s.state for s in tracked] == [SessionState.CREATING]
    assert emulator.live_sessions() == set()
