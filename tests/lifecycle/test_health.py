"""
HealthMonitor, driven directly on a real manager: what a ping finds, and what
it does to the session (ALIVE, DEGRADED, LOST, EXPIRED, recovered).

The manager pings every 10 s on a ManualClock; these tests never advance it
that far unless they mean the scheduler to ping, so each ping here is the one
the test makes.
"""

from __future__ import annotations

import anyio

import tether
from tether._clock import to_datetime


S = tether.SessionState
K = tether.EventKind
H = tether.HealthStatus


async def test_a_good_ping_is_alive_and_writes_nothing_new(make, backend, recording):
    """
    A ping that finds the session as recorded returns ALIVE, emits PINGED with
    its latency, notes the ping in memory, and writes nothing to the store.
    """
    async with make() as manager:
        s = await manager.create("fake")
        async with recording(manager) as rec:
            health = await manager._health.ping(s.id)
        after = await manager.get(s.id)
        tracked = manager._runtime.tracked[s.id]

    assert H.ALIVE == health.status
    assert s.version == after.version
    assert [K.PINGED] == rec.kinds()
    assert "latency" in rec.events[0].data
    assert (True, 0) == (tracked.last_ok, tracked.failures)
    assert tracked.last_ping_at is not None


async def test_a_ping_learns_the_services_deadline_and_replans_expiry(
    make, backend, clock
):
    """
    A deadline the service reports (renewed elsewhere) is written to the record
    and the expiry job moves with it.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=100)
        expire_seq = manager._runtime.tracked[s.id].expire_seq
        backend.sessions[s.remote_id].expires_at = clock.time() + 500

        await manager._health.ping(s.id)
        after = await manager.get(s.id)
        tracked = manager._runtime.tracked[s.id]

    assert to_datetime(clock.time() + 500) == after.expires_at
    assert tracked.expire_seq not in (0, expire_seq)


async def test_a_failed_background_ping_degrades_once_and_counts(
    make, backend, recording
):
    """
    A background ping makes one attempt; a transient failure makes the session
    DEGRADED (one DEGRADED event, from ACTIVE) and counts a failure; the
    second failure counts again without another event.
    """
    async with make() as manager:
        s = await manager.create("fake")
        backend.fail("ping", times=2)
        async with recording(manager) as rec:
            await manager._health.background_ping(s.id)
            assert 1 == backend.calls["ping"]
            await manager._health.background_ping(s.id)
        after = await manager.get(s.id)
        tracked = manager._runtime.tracked[s.id]

    assert S.DEGRADED == after.state
    assert "ping failed" in (after.error or "")
    assert 2 == tracked.failures
    assert tracked.last_ok is False
    degraded = rec.of(K.DEGRADED)
    assert [S.ACTIVE] == [e.previous_state for e in degraded]


async def test_a_ping_on_request_is_retried(make, backend):
    """
    A ping the caller asks for gets the retry policy's attempts (3 here).
    """
    async with make() as manager:
        s = await manager.create("fake")
        backend.fail("ping", times=2)
        health = await manager._health.ping(s.id)
        after = await manager.get(s.id)

    assert (H.ALIVE, 3, S.ACTIVE) == (health.status, backend.calls["ping"], after.state)


async def test_a_good_ping_brings_a_degraded_session_back(make, backend, recording):
    """
    DEGRADED, then a good ping: ACTIVE again, a RECOVERED event from DEGRADED,
    and the failure count starts over.
    """
    async with make() as manager:
        s = await manager.create("fake")
        backend.fail("ping")
        await manager._health.background_ping(s.id)
        async with recording(manager) as rec:
            await manager._health.background_ping(s.id)
        after = await manager.get(s.id)
        snap = manager.snapshot().sessions[0]

    assert S.ACTIVE == after.state
    assert [(K.RECOVERED, S.DEGRADED)] == [
        (e.kind, e.previous_state) for e in rec.events
    ]
    assert (0, True) == (snap.consecutive_failures, snap.last_ping_ok)


async def test_failures_before_lost_failures_make_it_lost(make, backend, recording):
    """
    With ``failures_before_lost=1`` the first failed ping makes the session
    LOST directly (no DEGRADED step), untracked, and noted for a close on exit.
    """
    async with make(
        health=tether.HealthPolicy(interval=10, jitter=0, failures_before_lost=1)
    ) as manager:
        s = await manager.create("fake")
        backend.fail("ping")
        async with recording(manager) as rec:
            await manager._health.background_ping(s.id)
        after = await manager.get(s.id)
        runtime = manager._runtime
        assert s.id not in runtime.tracked
        assert s.id in runtime.lost

    assert S.LOST == after.state
    assert "1 pings failed in a row" in (after.error or "")
    assert [K.LOST] == rec.kinds()
    # On exit the manager asked the service to end it, best effort.
    assert set() == backend.live_ids()


async def test_a_service_that_lost_the_session_makes_it_lost_at_once(
    make, backend, recording
):
    """
    A service that no longer has the session (GONE) makes it LOST on the first
    ping, whatever the failure count.
    """
    async with make() as manager:
        s = await manager.create("fake")
        backend.kill(s.remote_id)
        async with recording(manager) as rec:
            health = await manager._health.ping(s.id)
        after = await manager.get(s.id)
        tracked = s.id in manager._runtime.tracked

    assert (H.GONE, S.LOST, False) == (health.status, after.state, tracked)
    assert [(K.LOST, S.ACTIVE)] == [(e.kind, e.previous_state) for e in rec.events]


async def test_a_service_that_says_expired_makes_it_expired_without_a_close(
    make, backend, clock, recording
):
    """
    A ping that finds the session expired on the service records it EXPIRED
    (with an EXPIRED event) and sends no close: it is gone already.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=5)
        clock._now += 6  # the service's deadline passes; no job runs meanwhile
        async with recording(manager) as rec:
            health = await manager._health.ping(s.id)
        after = await manager.get(s.id)
        closes = backend.calls["close"]

    assert (H.EXPIRED, S.EXPIRED) == (health.status, after.state)
    assert [K.EXPIRED] == rec.kinds()
    assert 0 == closes


async def test_a_refused_background_ping_is_logged_and_the_next_is_planned(
    make, backend
):
    """
    A background ping never raises a provider's error: a permanent refusal
    (auth) leaves the state as it was, and the next ping is planned.
    """
    async with make() as manager:
        s = await manager.create("fake")
        seq = manager._runtime.tracked[s.id].ping_seq
        backend.fail("ping", "auth")

        await manager._health.background_ping(s.id)

        after = await manager.get(s.id)
        new_seq = manager._runtime.tracked[s.id].ping_seq

    assert S.ACTIVE == after.state
    assert new_seq not in (0, seq)


async def test_background_pings_leave_untracked_and_ended_sessions_alone(make, backend):
    """
    No provider call for a session this manager does not track, or that ended.
    """
    async with make() as manager:
        s = await manager.create("fake")
        manager._runtime.untrack(s.id)
        await manager._health.background_ping(s.id)
        ended = await manager.create("fake")
        await manager.close(ended)
        await manager._health.background_ping(ended.id)
        await manager._health.background_ping("no-such-session")

    assert 0 == backend.calls["ping"]


async def test_a_session_still_creating_is_not_pinged_yet(make, backend, store):
    """
    A tracked record still CREATING is not pinged; its ping is planned again.
    """
    async with make() as manager:
        s = await manager.create("fake")
        record = await store.get(s.id)
        store._records[s.id] = record.evolve(state=S.CREATING)
        seq = manager._runtime.tracked[s.id].ping_seq

        await manager._health.background_ping(s.id)

        new_seq = manager._runtime.tracked[s.id].ping_seq
        store._records[s.id] = record  # let the exit close it

    assert 0 == backend.calls["ping"]
    assert new_seq not in (0, seq)


async def test_mark_lost_leaves_an_ended_session_as_it_is(make, recording):
    """
    Marking a session LOST that has ended already changes nothing, silently.
    """
    async with make() as manager:
        s = await manager.create("fake")
        closed = await manager.close(s)
        async with recording(manager) as rec:
            await manager._health.mark_lost(s.id, "too late")
        after = await manager.get(s.id)

    assert closed == after
    assert [] == rec.events


async def test_a_ping_slower_than_its_interval_is_not_followed_back_to_back(
    make, backend, clock
):
    """
    A background ping that takes longer than the interval plans the next one
    a small gap after it ends (a tenth of the interval, at most 0.1 s), not in
    the past: a slow service is not pinged back to back.
    """
    async with make() as manager:
        await manager.create("fake")
        entered, release = backend.gate("ping")
        await clock.advance(10)  # the background ping starts, and hangs
        with anyio.fail_after(20):
            await entered.wait()
        await clock.advance(15)  # it took 15 s: longer than its interval
        release.set()
        with anyio.fail_after(20):
            while backend.calls["ping"] < 1:  # noqa: ASYNC110 -- polling a count
                await anyio.sleep(0.01)
        await anyio.sleep(0.5)  # real time: the clock stands still
        slow_only = backend.calls["ping"]
        await clock.advance(0.1)  # the gap passes
        with anyio.fail_after(20):
            while backend.calls["ping"] < 2:  # noqa: ASYNC110 -- polling a count
                await anyio.sleep(0.01)

    assert 1 == slow_only
