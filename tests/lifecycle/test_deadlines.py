"""
Deadlines, driven directly on a real manager: renewing a lifetime, keepalive
before the deadline, and expiry when it comes.
"""

from __future__ import annotations

import anyio
import pytest
import structlog

import tether
from tether._clock import to_datetime
from tether.exceptions import InvalidParameterError


S = tether.SessionState
K = tether.EventKind


async def test_renew_extends_on_the_service_and_replans_expiry(
    make, backend, clock, recording
):
    """
    Renewing asks the service, records its new deadline, emits RENEWED, and
    moves the expiry job to the new deadline.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=60)
        seq = manager._runtime.tracked[s.id].expire_seq
        await clock.advance(5)
        async with recording(manager) as rec:
            renewed = await manager._deadlines.renew(s.id, 100)
        new_seq = manager._runtime.tracked[s.id].expire_seq

    assert to_datetime(clock.time() + 100) == renewed.expires_at
    assert to_datetime(clock.time() + 100).timestamp() == (
        backend.sessions[s.remote_id].expires_at
    )
    assert [K.RENEWED] == rec.kinds()
    assert new_seq not in (0, seq)


async def test_renew_never_shortens_a_lifetime(make):
    """
    A renewal shorter than what is left keeps the later deadline.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=600)
        renewed = await manager._deadlines.renew(s.id, 10)

    assert s.expires_at == renewed.expires_at


async def test_renew_needs_a_positive_lifetime(make, backend):
    """
    A session without a lifetime of its own needs one given; nothing is sent.
    """
    async with make() as manager:
        s = await manager.create("fake")
        with pytest.raises(InvalidParameterError):
            await manager._deadlines.renew(s.id, None)

    assert 0 == backend.calls["renew"]


async def test_tethers_own_deadline_is_moved_without_asking_the_service(
    make, backend, clock
):
    """
    For a service with no lifetime of its own (and no renew), the deadline is
    tether's: renew moves it and sends nothing.
    """
    async with make() as manager:
        s = await manager.create("own", lifetime=60)
        renewed = await manager._deadlines.renew(s.id, 300)

    assert to_datetime(clock.time() + 300) == renewed.expires_at
    assert 0 == backend.calls["renew"]


async def test_keepalive_backs_off_on_failures_then_renews(make, backend, clock):
    """
    A keepalive whose renewal fails (after its retries) waits on the clock,
    half a second first, then tries again, and stops once it renewed.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=60, keepalive=True)
        backend.fail("renew", times=3)  # every attempt of the first renewal
        done = anyio.Event()

        async def keepalive() -> None:
            await manager._deadlines.keepalive(s.id)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(keepalive)
            await anyio.wait_all_tasks_blocked()
            assert (3, False) == (backend.calls["renew"], done.is_set())
            await clock.advance(0.5)
        after = await manager.get(s.id)

    assert 4 == backend.calls["renew"]
    assert to_datetime(clock.time() + 60) == after.expires_at


async def test_keepalive_stops_when_the_session_ended(make, backend):
    """
    Keepalive of a closed session does nothing.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=60, keepalive=True)
        await manager.close(s)
        await manager._deadlines.keepalive(s.id)

    assert 0 == backend.calls["renew"]


async def test_an_expiry_before_the_deadline_only_replans(make, backend, clock):
    """
    An expiry job that comes before the (renewed) deadline closes nothing and
    plans itself for the deadline.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=60)
        seq = manager._runtime.tracked[s.id].expire_seq
        await manager._deadlines.expire(s.id)
        after = await manager.get(s.id)
        new_seq = manager._runtime.tracked[s.id].expire_seq
        closes = backend.calls["close"]

    assert (S.ACTIVE, 0) == (after.state, closes)
    assert new_seq not in (0, seq)


async def test_at_the_deadline_the_session_is_closed_and_expired(
    make, backend, clock, recording
):
    """
    When the deadline comes, the session is closed on the service and
    recorded EXPIRED (event EXPIRED, from ACTIVE), and leaves tracking.
    """
    async with make() as manager:
        s = await manager.create("own", lifetime=60)
        async with recording(manager) as rec:
            await clock.advance(60)
        after = await manager.get(s.id)
        tracked = s.id in manager._runtime.tracked

    assert (S.EXPIRED, False) == (after.state, tracked)
    assert 1 == backend.calls["close"]  # and none on exit: it ended
    assert "closed" == backend.sessions[s.remote_id].state
    assert [(K.EXPIRED, S.ACTIVE)] == [
        (e.kind, e.previous_state) for e in rec.of(K.EXPIRED)
    ]


async def test_a_failed_close_at_expiry_is_expired_where_the_service_ends_it(
    make, backend, clock
):
    """
    If the close at the deadline fails but the service ends sessions by itself
    (server TTL), the session is EXPIRED anyway.
    """
    async with make() as manager:
        s = await manager.create("fake", lifetime=60)
        backend.fail("close", times=3)
        clock._now += 60
        await manager._deadlines.expire(s.id)
        after = await manager.get(s.id)

    assert S.EXPIRED == after.state


async def test_a_failed_close_at_expiry_is_kept_closing_and_retried(
    make, backend, clock
):
    """
    If the close at the deadline fails on a service that will not end the
    session by itself, the record stays CLOSING (it may still run and bill)
    and the expiry is planned again 5 s later.
    """
    async with make() as manager:
        s = await manager.create("own", lifetime=60)
        backend.fail("close", times=3)
        await clock.advance(60)
        after = await manager.get(s.id)
        tracked = manager._runtime.tracked.get(s.id)
        retry_seq = tracked.expire_seq if tracked else 0
        closes = backend.calls["close"]

    assert S.CLOSING == after.state
    assert 3 == closes
    assert 0 != retry_seq


async def test_a_close_at_expiry_past_the_shield_is_kept_closing_and_logged(
    make, backend, clock
):
    """
    A close at the deadline that runs out of shield_timeout unanswered, on a
    service that will not end the session by itself, is a failure like a
    refusal: the record stays CLOSING (it was recorded EXPIRED while the
    service still ran it), the expiry is planned again, and a
    tether.session.close_failed warning names it.
    """
    async with make(shield_timeout=1) as manager:
        s = await manager.create("own", lifetime=60)
        _, release = backend.gate("close")
        try:
            clock._now += 60
            with structlog.testing.capture_logs() as logs:
                await manager._deadlines.expire(s.id)
            after = await manager.get(s.id)
        finally:
            release.set()

    assert S.CLOSING == after.state
    # The background expiry job may have tried too: each try says so.
    assert {(s.remote_id, "ProviderUnavailableError")} == {
        (e["remote_id"], e["error"])
        for e in logs
        if e["event"] == "tether.session.close_failed"
    }


async def test_the_retried_expiry_closes_and_expires_the_session(make, backend, clock):
    """
    The retry of a failed close at expiry closes the session on the service
    and records it EXPIRED.
    """
    async with make() as manager:
        s = await manager.create("own", lifetime=60)
        backend.fail("close", times=3)
        await clock.advance(60)  # the close fails: CLOSING, retry in 5 s
        await clock.advance(5)
        after = await manager.get(s.id)
        closes = backend.calls["close"]
        remote_state = backend.sessions[s.remote_id].state

    assert (S.EXPIRED, 4, "closed") == (after.state, closes, remote_state)
