"""
Records on their own: read-modify-write under the store's version check, the
fencing token of the current job's lease, and what a write means for the
sessions this manager tracks.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import tether
from tether._clock import to_datetime
from tether._lifecycle.records import Records, fenced
from tether._lifecycle.runtime import Tracked
from tether.exceptions import LeaseLostError, SessionNotFoundError, StaleRecordError


S = tether.SessionState


@pytest.fixture(name="records")
def _records(runtime) -> Records:
    return Records(runtime)


async def insert(runtime, session_id="s1", **kw) -> tether.Session:
    now = runtime.now()
    kw.setdefault("state", S.ACTIVE)
    return await runtime.store.insert(
        tether.Session(
            id=session_id, provider="fake", created_at=now, updated_at=now, **kw
        )
    )


async def test_mutate_writes_the_change_with_a_new_version_and_time(
    runtime, records, clock
):
    """
    A change is written with the store's next version, stamped with the
    manager's clock.
    """
    s = await insert(runtime)
    await clock.advance(7)

    after = await records.mutate(s.id, lambda c: c.evolve(raw_state="busy"))

    assert ("busy", s.version + 1) == (after.raw_state, after.version)
    assert to_datetime(clock.time()) == after.updated_at
    assert after == await runtime.store.get(s.id)


async def test_a_change_that_returns_none_writes_nothing(runtime, records):
    """
    ``None`` from the change leaves the record as it is: no write, no version.
    """
    s = await insert(runtime)

    after = await records.mutate(s.id, lambda _current: None)

    assert s == after == await runtime.store.get(s.id)


async def test_a_concurrent_writer_makes_mutate_read_again(runtime, records):
    """
    When another writer wins between the read and the write, the version check
    refuses the write, and the change is applied again to what the other wrote:
    neither change is lost.
    """
    s = await insert(runtime)
    seen: list[str | None] = []

    def change(current: tether.Session) -> tether.Session:
        seen.append(current.error)
        if len(seen) == 1:
            # The other writer lands between our read and our write (the
            # memory store never suspends, so run it here, synchronously).
            runtime.store._records[s.id] = runtime.store._records[s.id].evolve(
                error="by the other writer", version=current.version + 1
            )
        return current.evolve(raw_state="mine")

    after = await records.mutate(s.id, change)

    assert [None, "by the other writer"] == seen
    assert ("mine", "by the other writer") == (after.raw_state, after.error)
    assert s.version + 2 == after.version


async def test_a_stale_known_record_is_caught_and_read_again(runtime, records):
    """
    *known* is tried first; if another writer moved the record since, the
    version check catches it and the current record is read.
    """
    old = await insert(runtime)
    newer = await runtime.store.update(old.evolve(error="newer"))
    bases: list[int] = []

    def change(current: tether.Session) -> tether.Session:
        bases.append(current.version)
        return current.evolve(raw_state="x")

    after = await records.mutate(old.id, change, known=old)

    assert [old.version, newer.version] == bases
    assert ("x", "newer") == (after.raw_state, after.error)


async def test_mutate_gives_up_on_a_record_that_keeps_changing(runtime, records):
    """
    After 16 lost races in a row, mutate raises StaleRecordError instead of
    looping forever.
    """
    s = await insert(runtime)
    calls = 0

    def change(current: tether.Session) -> tether.Session:
        nonlocal calls
        calls += 1
        bumped = runtime.store._records[s.id]
        runtime.store._records[s.id] = bumped.evolve(version=bumped.version + 1)
        return current.evolve(raw_state="never")

    with pytest.raises(StaleRecordError, match="kept changing"):
        await records.mutate(s.id, change)

    assert 16 == calls
    assert (await runtime.store.get(s.id)).raw_state is None


async def test_current_of_an_unknown_session_raises(records):
    """
    A session with no record is SessionNotFoundError, for reads and mutations.
    """
    with pytest.raises(SessionNotFoundError):
        await records.current("nope")
    with pytest.raises(SessionNotFoundError):
        await records.mutate("nope", lambda c: c)


async def test_writes_fenced_by_a_lapsed_lease_fail(runtime, records, clock):
    """
    Inside ``fenced(token)`` every write carries the token: once the lease
    lapsed and another owner claimed it (a larger token), the old holder's
    write raises LeaseLostError and changes nothing; the new holder's lands.
    """
    s = await insert(runtime)
    mine = await runtime.store.claim(s.id, "me", 5)
    await clock.advance(6)  # the lease lapses
    theirs = await runtime.store.claim(s.id, "them", 5)
    assert theirs is not None
    assert mine is not None
    assert theirs > mine

    with fenced(mine), pytest.raises(LeaseLostError):
        await records.mutate(s.id, lambda c: c.evolve(raw_state="stale"))
    assert (await runtime.store.get(s.id)).raw_state is None

    with fenced(theirs):
        after = await records.mutate(s.id, lambda c: c.evolve(raw_state="fresh"))
    assert "fresh" == after.raw_state


async def test_the_fence_ends_with_its_block(runtime, records, clock):
    """
    A worker runs job after job: the fence set for one job must not outlive
    it, even when the job fails. Writes after the block are unfenced.
    """
    s = await insert(runtime)
    mine = await runtime.store.claim(s.id, "me", 5)
    await clock.advance(6)
    await runtime.store.claim(s.id, "them", 5)

    with pytest.raises(LeaseLostError), fenced(mine):
        await records.mutate(s.id, lambda c: c.evolve(raw_state="stale"))

    after = await records.mutate(s.id, lambda c: c.evolve(raw_state="unfenced"))
    assert "unfenced" == after.raw_state


async def test_the_fence_is_per_task(runtime, records, clock):
    """
    The fence lives in a context variable: two workers running at once each
    write with their own job's token, never the other's.
    """
    s = await insert(runtime)
    old = await runtime.store.claim(s.id, "me", 5)
    await clock.advance(6)
    new = await runtime.store.claim(s.id, "them", 5)
    outcomes: dict[str, str] = {}

    async def write(name: str, token: int) -> None:
        with fenced(token):
            await anyio.lowlevel.checkpoint()
            try:
                await records.mutate(s.id, lambda c: c.evolve(raw_state=name))
                outcomes[name] = "ok"
            except LeaseLostError:
                outcomes[name] = "lost"

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "old", old)
        tg.start_soon(write, "new", new)

    assert {"old": "lost", "new": "ok"} == outcomes


async def test_after_write_keeps_the_tracked_copy_in_step(runtime, records, clock):
    """
    A write to a tracked session updates its tracked state and deadline.
    """
    s = await insert(runtime)
    runtime.tracked[s.id] = Tracked(session_id=s.id, provider="fake")
    deadline = to_datetime(clock.time() + 60)

    await records.mutate(
        s.id, lambda c: c.transition(S.DEGRADED).evolve(expires_at=deadline)
    )

    tracked = runtime.tracked[s.id]
    assert (S.DEGRADED, deadline.timestamp()) == (tracked.state, tracked.expires_at)


async def test_an_ended_session_leaves_tracking_and_its_scopes_are_cancelled(
    runtime, records
):
    """
    A session that ends (CLOSED here) is untracked, and every scope bound to
    it is cancelled.
    """
    s = await insert(runtime)
    scope = anyio.CancelScope()
    runtime.tracked[s.id] = Tracked(session_id=s.id, provider="fake", scopes={scope})

    await records.mutate(s.id, lambda c: c.transition(S.CLOSING))
    assert s.id in runtime.tracked  # CLOSING is not the end
    assert not scope.cancel_called
    await records.mutate(s.id, lambda c: c.transition(S.CLOSED))

    assert scope.cancel_called
    assert s.id not in runtime.tracked


async def test_a_lost_session_stays_tracked_to_be_closed_on_exit(runtime, records):
    """
    LOST cancels the session's scopes but keeps it tracked: the service may
    hold it still, and the manager closes it on exit.
    """
    s = await insert(runtime)
    scope = anyio.CancelScope()
    runtime.tracked[s.id] = Tracked(session_id=s.id, provider="fake", scopes={scope})

    await records.mutate(s.id, lambda c: c.transition(S.LOST))

    assert scope.cancel_called
    assert S.LOST == runtime.tracked[s.id].state


async def test_a_session_that_stops_being_live_frees_a_slot(runtime, records):
    """
    Waiting admissions are woken when a live session of this manager stops
    being live; a write that keeps it live wakes nobody.
    """
    s = await insert(runtime)
    freed = records.slot_freed()
    assert freed is records.slot_freed()  # one event until it is set

    await records.mutate(s.id, lambda c: c.transition(S.DEGRADED))
    assert not freed.is_set()
    await records.mutate(s.id, lambda c: c.transition(S.CLOSING))

    assert freed.is_set()
    assert records.slot_freed() is not freed  # a fresh one for the next wait
