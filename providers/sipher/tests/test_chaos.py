"""
Under injected faults, tether's view and the service's agree; where they cannot
(a create whose answer was lost), the orphan expires on the service by itself.
"""

from __future__ import annotations

import contextlib

import pytest

import tether
from tether import SessionState
from tether.exceptions import OutcomeUnknownError, TetherError
from tether.testing import ASGIServer, Fault, ManualClock
from tether_sipher import SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


def _manager(server: ASGIServer, clock: ManualClock) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sipher", SipherProvider)
    return tether.SessionManager(
        registry=registry,
        config={"sipher": {"base_url": server.url, "api_key": PRO_KEY, "timeout": 5}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        on_exit="keep",
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_unambiguous_faults_keep_views_equal(
    server: ASGIServer, clock: ManualClock, emulator: SipherEmulator, seed: int
) -> None:
    """
    With faults that never change state (503, 429, a drop before handling),
    the sessions tether holds as active are exactly the service's live ones.
    """
    emulator.faults.reseed(seed)
    emulator.faults.rate = 0.4
    emulator.faults.kinds = [Fault.SERVER_ERROR, Fault.RATE_LIMIT, Fault.DROP]
    async with _manager(server, clock) as manager:
        for _ in range(12):
            with contextlib.suppress(TetherError):
                await manager.create("sipher", chain="solana", lifetime=600)
        emulator.faults.rate = 0.0
        active = await manager.list(provider="sipher", state=SessionState.ACTIVE)

        assert {s.remote_id for s in active} == emulator.live_sessions()
        assert sum(emulator.faults.injected.values()) > 0


async def test_lost_create_answers_leave_orphans_that_expire(
    server: ASGIServer, clock: ManualClock, emulator: SipherEmulator
) -> None:
    """
    A create handled but unanswered raises OutcomeUnknownError and is not
    repeated; its orphan is live on the service until its TTL ends.
    """
    emulator.faults.reseed(5)
    emulator.faults.rate = 0.5
    emulator.faults.kinds = [Fault.DROP_AFTER]
    unknown = 0
    async with _manager(server, clock) as manager:
        for _ in range(8):
            try:
                await manager.create("sipher", lifetime=120)
            except OutcomeUnknownError:
                unknown += 1
        emulator.faults.rate = 0.0
        active = {
            s.remote_id
            for s in await manager.list(provider="sipher", state=SessionState.ACTIVE)
        }
        live = emulator.live_sessions()

        assert unknown > 0
        assert active <= live
        assert len(live - active) == unknown
        await clock.advance(121)
        assert emulator.live_sessions() == set()
