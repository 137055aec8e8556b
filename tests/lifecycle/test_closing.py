"""
Closer, on a real manager: closes on request (idempotent, finding a session
whose create answer was lost), LOST sessions on exit, every tracked one on exit.
"""

from __future__ import annotations

import pytest

import tether
from tether._clock import to_datetime
from tether.exceptions import ProviderUnavailableError
from tether.testing import FakeRemote


S = tether.SessionState
K = tether.EventKind


async def test_close_ends_it_on_the_service_and_records_it_closed(
    make, backend, recording
):
    """
    A close ends the remote session, records CLOSED, untracks it, and emits
    CLOSED with the state it was in.
    """
    async with make() as manager:
        s = await manager.create("fake")
        async with recording(manager) as rec:
            closed = await manager._closer.close(s.id)
        tracked = s.id in manager._runtime.tracked

    assert (S.CLOSED, False) == (closed.state, tracked)
    assert set() == backend.live_ids()
    assert [(K.CLOSED, S.ACTIVE)] == [(e.kind, e.previous_state) for e in rec.events]


async def test_closing_an_ended_session_sends_nothing(make, backend, recording):
    """
    Idempotent: an ended record is returned as it is, with no call and no event.
    """
    async with make() as manager:
        s = await manager.create("fake")
        first = await manager._closer.close(s.id)
        async with recording(manager) as rec:
            again = await manager._closer.close(s.id)

    assert first == again
    assert (1, []) == (backend.calls["close"], rec.events)


async def test_a_record_without_a_remote_id_is_found_then_closed(
    make, backend, store, clock
):
    """
    A record whose create answer was lost (CREATING, no remote id) is found on
    the service by tether's tag and closed there; the record keeps the id.
    """
    now = to_datetime(clock.time())
    await store.insert(
        tether.Session(
            id="t1", provider="fake", state=S.CREATING, created_at=now, updated_at=now
        )
    )
    backend.sessions["fake-r1"] = FakeRemote(
        id="fake-r1",
        tether_id="t1",
        params={},
        created_at=clock.time(),
        expires_at=None,
    )
    async with make() as manager:
        closed = await manager._closer.close("t1")

    assert (S.CLOSED, "fake-r1") == (closed.state, closed.remote_id)
    assert (1, "closed") == (backend.calls["find"], backend.sessions["fake-r1"].state)


async def test_a_lost_session_can_be_closed(make, backend, recording):
    """
    A LOST session may still run on the service: closing it ends it there and
    records CLOSED (from LOST).
    """
    async with make() as manager:
        s = await manager.create("fake")
        await manager._health.mark_lost(s.id, "a partition")
        async with recording(manager) as rec:
            closed = await manager._closer.close(s.id)

    assert S.CLOSED == closed.state
    assert set() == backend.live_ids()
    assert [S.LOST] == [e.previous_state for e in rec.of(K.CLOSED)]


async def test_a_failed_close_stays_closing_and_a_later_close_finishes_it(
    make, backend
):
    """
    A close the service fails (after retries) raises and leaves the record
    CLOSING; the next close tries again and finishes it.
    """
    async with make() as manager:
        s = await manager.create("fake")
        backend.fail("close", times=3)
        with pytest.raises(ProviderUnavailableError):
            await manager._closer.close(s.id)
        stuck = await manager.get(s.id)
        closed = await manager._closer.close(s.id)

    assert (S.CLOSING, S.CLOSED) == (stuck.state, closed.state)
    assert (4, set()) == (backend.calls["close"], backend.live_ids())


async def test_close_lost_ends_it_on_the_service_and_keeps_the_record_lost(
    make, backend
):
    """
    On exit a LOST session is closed on the service, best effort: one attempt,
    the breaker left alone, and the record stays LOST (what happened to it).
    """
    async with make() as manager:
        s = await manager.create("fake")
        await manager._health.mark_lost(s.id, "a partition")
        backend.fail("close")
        await manager._closer.close_lost(s.id)  # fails, quietly
        failed_once = (backend.calls["close"], set(backend.live_ids()))
        breaker = manager._slots.get("fake").breaker.failures
        await manager._closer.close_lost(s.id)
        after = await manager.get(s.id)
        manager._runtime.lost.clear()

    assert (1, {s.remote_id}) == failed_once
    assert 0 == breaker
    assert (S.LOST, set()) == (after.state, backend.live_ids())


async def test_close_tracked_closes_everything_whatever_fails(make, backend, store):
    """
    On exit every tracked session is closed and every LOST one asked to end,
    all at once; the one close the service refuses (whichever it is) leaves
    that session as it was without stopping the others.
    """
    async with make() as manager:
        a = await manager.create("fake")
        b = await manager.create("fake")
        c = await manager.create("fake")
        await manager._health.mark_lost(c.id, "a partition")
        backend.fail("close", "auth")  # permanent: one close, not retried

        await manager._closer.close_tracked()

        after = {x.id: await store.get(x.id) for x in (a, b, c)}
        live = backend.live_ids()
        manager._runtime.tracked.clear()
        manager._runtime.lost.clear()

    assert 3 == backend.calls["close"]
    assert 1 == len(live)
    for x in (a, b):
        expected = S.CLOSING if x.remote_id in live else S.CLOSED
        assert expected == after[x.id].state
    assert S.LOST == after[c.id].state
