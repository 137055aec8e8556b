"""
reconcile(): the store against what the service reports.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import tether
from tether.testing import FakeBackend, FakeProvider, FakeRemote, ManualClock


S = tether.SessionState
FAST = tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0)


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="backend")
def _backend(clock) -> FakeBackend:
    return FakeBackend(clock=clock.time)


@pytest.fixture(name="store")
def _store() -> tether.MemoryStore:
    return tether.MemoryStore()


def manager(backend, clock, store, **kw) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    return tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        store=store,
        retry=FAST,
        clock=clock,
        health_checks=False,
        on_exit="keep",
        environ={},
        **kw,
    )


def intent(clock: ManualClock, session_id: str = "a" * 32) -> tether.Session:
    """
    A write-ahead record, as a worker that crashed mid-create leaves it.
    """
    at = datetime.fromtimestamp(clock.time(), UTC)
    return tether.Session(
        id=session_id, provider="fake", state=S.CREATING, created_at=at, updated_at=at
    )


def remote(backend, clock, tether_id: str, remote_id: str = "fake-r1") -> None:
    backend.sessions[remote_id] = FakeRemote(
        id=remote_id,
        tether_id=tether_id,
        params={},
        created_at=clock.time(),
        expires_at=None,
    )


async def test_vanished_session_becomes_lost(backend, clock, store):
    """
    A live record whose remote session is gone is marked LOST.
    """
    async with manager(backend, clock, store) as m:
        s = await m.create("fake")
        del backend.sessions[s.remote_id]

        report = await m.reconcile()

        assert S.LOST == (await m.get(s.id)).state
    assert {"lost": 1} == report.counts


async def test_crashed_create_is_adopted(backend, clock, store):
    """
    A CREATING intent whose remote exists (the crash came after the service
    answered) is adopted as ACTIVE.
    """
    await store.insert(intent(clock))
    remote(backend, clock, "a" * 32)
    async with manager(backend, clock, store) as m:
        report = await m.reconcile()
        adopted = await m.get("a" * 32)

    assert {"adopted": 1} == report.counts
    assert (S.ACTIVE, "fake-r1") == (adopted.state, adopted.remote_id)


async def test_crashed_create_never_made_fails_after_grace(backend, clock, store):
    """
    A CREATING intent the service never saw is left alone during the grace
    period, then marked FAILED.
    """
    await store.insert(intent(clock))
    async with manager(backend, clock, store) as m:
        early = await m.reconcile(grace=60)
        await clock.advance(61)
        late = await m.reconcile(grace=60)
        record = await m.get("a" * 32)

    assert {} == early.counts
    assert {"failed": 1} == late.counts
    assert S.FAILED == record.state


async def test_closing_record_is_closed_again(backend, clock, store):
    """
    A session whose close failed (left CLOSING) is closed by reconcile.
    """
    async with manager(backend, clock, store) as m:
        s = await m.create("fake")
        backend.fail("close", "unavailable", times=2)
        with pytest.raises(tether.exceptions.ProviderUnavailableError):
            await m.close(s)

        report = await m.reconcile()

        assert S.CLOSED == (await m.get(s.id)).state
    assert {"closed": 1} == report.counts
    assert set() == backend.live_ids()


async def test_tagged_orphan_is_closed(backend, clock, store):
    """
    A remote session tagged by tether with no record (a lost store, a crash
    before the write) is closed; an untagged one is left alone.
    """
    remote(backend, clock, "b" * 32, "fake-orphan")
    remote(backend, clock, "", "fake-foreign")
    async with manager(backend, clock, store) as m:
        report = await m.reconcile(grace=0)

    assert {"closed": 1, "foreign": 1} == report.counts
    assert {"fake-foreign"} == backend.live_ids()


async def test_orphan_of_an_ended_record_is_closed(backend, clock, store):
    """
    A record marked ended while its remote still runs is a leak: closed.
    """
    async with manager(backend, clock, store) as m:
        s = await m.create("fake")
        current = await store.get(s.id)
        await store.update(current.transition(S.CLOSING))
        closed = await store.get(s.id)
        await store.update(closed.transition(S.CLOSED))

        report = await m.reconcile()

    assert {"closed": 1} == report.counts
    assert set() == backend.live_ids()


async def test_orphans_can_be_adopted(backend, clock, store):
    """
    With orphans="adopt", a tagged orphan gets a record and is watched.
    """
    remote(backend, clock, "c" * 32, "fake-orphan")
    async with manager(backend, clock, store) as m:
        report = await m.reconcile(orphans="adopt", grace=0)
        adopted = await m.get("c" * 32)

    assert {"adopted": 1} == report.counts
    assert (S.ACTIVE, "fake-orphan") == (adopted.state, adopted.remote_id)


async def test_dry_run_changes_nothing(backend, clock, store):
    """
    A dry run reports what it would do, and does none of it.
    """
    remote(backend, clock, "b" * 32, "fake-orphan")
    async with manager(backend, clock, store) as m:
        s = await m.create("fake")
        del backend.sessions[s.remote_id]

        report = await m.reconcile(dry_run=True, grace=0)

        assert S.ACTIVE == (await m.get(s.id)).state
    assert {"lost": 1, "closed": 1} == report.counts
    assert report.dry_run
    assert {"fake-orphan"} == backend.live_ids()


async def test_bad_orphan_policy(backend, clock, store):
    """
    An unknown orphan policy is a ConfigError, before any call.
    """
    async with manager(backend, clock, store) as m:
        with pytest.raises(tether.exceptions.ConfigError):
            await m.reconcile(orphans="burn")  # type: ignore[arg-type]

    assert 0 == backend.calls["list"]


async def test_young_orphans_are_left_alone(backend, clock, store):
    """
    A tagged session without a record is closed only once it is older than the
    grace period: it may be another deployment's, or a create racing reconcile.
    """
    remote(backend, clock, "b" * 32, "fake-orphan")
    async with manager(backend, clock, store) as m:
        young = await m.reconcile(grace=60)
        await clock.advance(61)
        old = await m.reconcile(grace=60)

    assert {} == young.counts
    assert {"closed": 1} == old.counts
    assert set() == backend.live_ids()


async def test_a_truncated_listing_is_not_taken_for_gone(backend, clock, store):
    """
    A service that lists only its newest sessions (or stops after a page
    limit) leaves live sessions out: reconcile confirms each by ``get`` and
    marks none LOST, and marks one LOST only once ``get`` says it is gone.
    """
    async with manager(backend, clock, store) as m:
        sessions = []
        for _ in range(3):
            sessions.append(await m.create("fake"))
            await clock.advance(1)
        backend.list_limit = 1

        report = await m.reconcile()

        assert {} == report.counts
        assert [S.ACTIVE] * 3 == [(await m.get(s.id)).state for s in sessions]
        assert 2 == backend.calls["get"]

        del backend.sessions[sessions[0].remote_id]
        report = await m.reconcile()

    assert {"lost": 1} == report.counts
    assert S.LOST == (await store.get(sessions[0].id)).state


async def test_a_second_reconcile_sends_and_reports_nothing(backend, clock, store):
    """
    Reconcile is idempotent: sessions it closed, and sessions closed the
    normal way, which the service still lists as ended, are neither closed
    again nor reported again.
    """
    backend.list_ended = True
    async with manager(backend, clock, store) as m:
        closed = await m.create("fake")
        await m.close(closed)
        await m.create("fake")
        remote(backend, clock, "b" * 32, "fake-orphan")
        await clock.advance(600)

        first = await m.reconcile()
        closes = backend.calls["close"]
        second = await m.reconcile(orphans="adopt", grace=0)

    assert {"closed": 1} == first.counts
    assert "fake-orphan" not in backend.live_ids()
    assert () == second.actions
    assert closes == backend.calls["close"]


async def test_an_adopted_orphan_names_its_new_record(backend, clock, store):
    """
    The ``adopted`` action of an orphan carries the id of the record made for
    it; an orphan the service lists as ended is not adopted.
    """
    backend.list_ended = True
    remote(backend, clock, "c" * 32, "fake-orphan")
    remote(backend, clock, "d" * 32, "fake-dead")
    backend.kill("fake-dead")
    async with manager(backend, clock, store) as m:
        report = await m.reconcile(orphans="adopt", grace=0)

    [action] = report.actions
    assert ("adopted", "c" * 32, "fake-orphan") == (
        action.kind,
        action.session_id,
        action.remote_id,
    )
    assert None is await store.get("d" * 32)


async def test_an_adopted_create_is_not_reported_foreign(backend, clock, store):
    """
    A crashed create found untagged in the listing (by its content) is
    reported once, as adopted, not also as a foreign session.
    """
    await store.insert(intent(clock))
    backend.sessions["fake-r1"] = FakeRemote(
        id="fake-r1", tether_id="", params={}, created_at=clock.time(), expires_at=None
    )

    class Matching(FakeProvider):
        def matches(self, session, remote):
            return True

    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", Matching)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        store=store,
        retry=FAST,
        clock=clock,
        health_checks=False,
        on_exit="keep",
        environ={},
    ) as m:
        report = await m.reconcile(grace=0)

    assert {"adopted": 1} == report.counts


async def test_a_session_nobody_watches_is_reported_then_attached(backend, clock):
    """
    A live session left by a manager that is gone (it did not watch, so no
    lease is held) is reported as unwatched; with ``unwatched="attach"`` this
    manager takes it over (pings, expiry, its on_exit). One whose lease a
    live manager holds is left alone.
    """
    store = tether.MemoryStore(clock=clock.time)
    async with manager(backend, clock, store) as gone:
        left = await gone.create("fake")
    async with manager(backend, clock, store) as m:
        report = await m.reconcile()
        [action] = report.actions
        assert ("unwatched", left.id) == (action.kind, action.session_id)

        await store.claim(left.id, "a-live-worker", 60)
        assert () == (await m.reconcile()).actions
        await clock.advance(61)

        attached = await m.reconcile(unwatched="attach")
        assert {"attached": 1} == attached.counts
        assert left.id in {s.id for s in m.snapshot().sessions}
        assert () == (await m.reconcile()).actions


async def test_reconcile_checks_its_options_first(backend, clock, store):
    """
    A bad grace or unwatched policy is a ConfigError before anything is sent;
    ``grace=0`` is allowed.
    """
    async with manager(backend, clock, store) as m:
        for bad in ({"grace": -1}, {"grace": "5"}, {"unwatched": "close"}):
            with pytest.raises(tether.ConfigError):
                await m.reconcile(**bad)
        assert () == (await m.reconcile(grace=0)).actions
    assert 1 == backend.calls["list"]
