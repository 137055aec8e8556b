"""
Jobs: a due background job run under its lease (fenced writes), the watch
sweep, and pruning; and one failed background ping traced end to end, from
the scheduler to a replacement session.
"""

from __future__ import annotations

import anyio
import structlog.testing

import tether
from tether._clock import to_datetime
from tether._lifecycle.records import _fence


S = tether.SessionState
K = tether.EventKind


class SpyStore(tether.MemoryStore):
    """
    A memory store that notes each lease claim and the fence of each write.
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.trace: list[tuple] = []
        self.broken = False

    async def claim(self, session_id, owner, ttl):
        if self.broken:
            raise RuntimeError("the store is down")
        token = await super().claim(session_id, owner, ttl)
        self.trace.append(("claim", session_id, token))
        return token

    async def update(self, session, *, fence=None):
        stored = await super().update(session, fence=fence)
        self.trace.append(("update", session.id, stored.state, fence))
        return stored


async def test_a_failed_background_ping_end_to_end(
    backend, other, clock, make, recording
):
    """
    The scheduler hands the due "ping" job to a worker; Jobs.run claims the
    session's lease and fences its writes; HealthMonitor.background_ping calls
    the provider through Calls; the transient error makes the record DEGRADED
    (event DEGRADED) and the next ping is planned. The second failure
    (``failures_before_lost=2``) makes it LOST (event LOST) and untracked, and
    its FailoverPolicy(recreate_lost=True) creates a replacement on the next
    candidate.
    """
    store = SpyStore(clock=clock.time)
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake"),
            tether.Candidate(provider="other"),
        ],
        recreate_lost=True,
    )
    trace: list[tuple] = []
    async with make(
        store=store,
        health=tether.HealthPolicy(interval=10, jitter=0, failures_before_lost=2),
    ) as manager:
        health, calls = manager._health, manager._calls
        background_ping, call = health.background_ping, calls.call

        async def spy_ping(session_id):
            trace.append(("background_ping", session_id, _fence.get()))
            await background_ping(session_id)

        async def spy_call(slot, fn, *, operation, **kw):
            trace.append(("call", slot.name, operation))
            return await call(slot, fn, operation=operation, **kw)

        health.background_ping = spy_ping
        calls.call = spy_call

        async with recording(manager) as rec:
            s = await manager.create(policy, labels={"job": "7"})
            assert "fake" == s.provider
            backend.fail("ping", times=2)
            store.trace.clear()
            trace.clear()

            # First due ping: DEGRADED.
            await clock.advance(10)
            degraded = await manager.get(s.id)
            token = next(t for op, sid, t, *_ in store.trace if op == "claim")
            first_writes = [x for x in store.trace if x[0] == "update"]
            tracked = manager._runtime.tracked[s.id]
            failures, ping_seq = tracked.failures, tracked.ping_seq
            assert [("background_ping", s.id, token), ("call", "fake", "ping")] == (
                trace
            )

            # Second due ping, one interval later: LOST, then replaced.
            await clock.advance(10)
            lost = await manager.get(s.id)
            live = await manager.list(state=S.ACTIVE)
            runtime = manager._runtime
            untracked = s.id not in runtime.tracked
            noted_lost = s.id in runtime.lost
            snapshot = manager.snapshot()

    # Round one: the job ran under its lease, its write carried the token.
    assert ("claim", s.id, token) == store.trace[0]
    assert [("update", s.id, S.DEGRADED, token)] == first_writes
    assert S.DEGRADED == degraded.state
    assert (1, True) == (failures, ping_seq != 0)  # the next ping is planned
    # Round two: LOST, untracked (to be closed on exit), replaced.
    assert S.LOST == lost.state
    assert "2 pings failed in a row" in (lost.error or "")
    assert (True, True) == (untracked, noted_lost)
    assert 2 == backend.calls["ping"]
    assert 1 == len(live)
    new = live[0]
    assert ("other", {"job": "7"}) == (new.provider, dict(new.labels))
    assert new.id == lost.data["replaced_by"]
    assert [new.id] == [x.id for x in snapshot.sessions]
    kinds = rec.kinds()
    assert kinds.index(K.DEGRADED) < kinds.index(K.LOST) < kinds.index(K.FAILOVER)
    failover = [e for e in rec.of(K.FAILOVER) if "old" in e.data]
    assert [(s.id, new.id)] == [(e.data["old"], e.data["new"]) for e in failover]
    # On exit both were closed: the replacement, and the lost one best effort.
    assert set() == backend.live_ids() == other.live_ids()


async def test_the_replacement_is_live_on_the_next_candidate(
    backend, other, clock, make
):
    """
    Ground truth: after a LOST session is replaced, the next candidate's
    service holds exactly the replacement, and the lost one's service is asked
    to end it only on exit (it may still hold it: a partition, not a death).
    """
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake"),
            tether.Candidate(provider="other"),
        ],
        recreate_lost=True,
    )
    async with make(
        health=tether.HealthPolicy(interval=10, jitter=0, failures_before_lost=1)
    ) as manager:
        s = await manager.create(policy)
        backend.fail("ping")
        await clock.advance(10)
        new = (await manager.list(state=S.ACTIVE))[0]
        on_other = other.live_ids()
        on_fake = backend.live_ids()

    assert {new.remote_id} == on_other
    assert {s.remote_id} == on_fake
    assert set() == backend.live_ids()


async def test_a_job_for_an_untracked_session_claims_nothing(make, clock):
    """
    A job whose session left tracking (its heap entry went stale) does nothing.
    """
    store = SpyStore(clock=clock.time)
    async with make(store=store) as manager:
        s = await manager.create("fake")
        manager._runtime.untrack(s.id)
        await manager._jobs.run("ping", s.id)

    assert [] == [x for x in store.trace if x[0] == "claim"]


async def test_a_session_leased_to_another_worker_is_given_up(make, backend, store):
    """
    When another live worker holds the session's lease, the job does not run
    and this manager stops watching the session.
    """
    async with make() as manager:
        s = await manager.create("fake")
        assert await store.claim(s.id, "another-worker", 60) is not None

        await manager._jobs.run("ping", s.id)

        assert s.id not in manager._runtime.tracked
        manager._runtime.tracked.clear()  # nothing to close on exit

    assert 0 == backend.calls["ping"]


async def test_a_lease_lost_during_a_job_drops_the_session_unchanged(
    make, backend, clock, store
):
    """
    If the lease lapses while a job waits on the service and another worker
    claims it, the job's write is refused (fenced): the record is unchanged
    and this manager stops watching the session.
    """
    async with make(
        health=tether.HealthPolicy(interval=10, jitter=0, lease_ttl=5)
    ) as manager:
        s = await manager.create("fake")
        backend.script(s.remote_id, ["sick"])  # the ping would degrade it
        entered, release = backend.gate("ping")
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager._jobs.run, "ping", s.id)
                await entered.wait()
                await clock.advance(6)  # the lease lapses meanwhile
                assert await store.claim(s.id, "another-worker", 60) is not None
                release.set()
        after = await manager.get(s.id)
        untracked = s.id not in manager._runtime.tracked
        manager._runtime.tracked.clear()

    assert S.ACTIVE == after.state
    assert s.version == after.version
    assert untracked
    assert "tether.lease.lost" in [e["event"] for e in logs]


async def test_the_sweep_adopts_live_sessions_whose_lease_is_free(make, store, clock):
    """
    In watch mode the sweep adopts live records of known providers whose lease
    is free; it leaves those another worker holds, ended ones, and providers
    it does not know; and it puts itself back on the schedule.
    """
    now = to_datetime(clock.time())

    def record(sid, provider="fake", state=S.ACTIVE):
        return tether.Session(
            id=sid, provider=provider, state=state, created_at=now, updated_at=now
        )

    for r in (
        record("free"),
        record("held"),
        record("done", state=S.CLOSED),
        record("alien", provider="unknown"),
    ):
        await store.insert(r)
    await store.claim("held", "another-worker", 600)

    async with make(watch=True, on_exit="keep") as manager:
        await manager._jobs.run("sweep", "*")
        adopted = set(manager._runtime.tracked)
        next_sweep = manager._scheduler.due("sweep", "*")

    assert {"free"} == adopted
    assert 0 != next_sweep


async def test_prune_deletes_only_long_ended_untracked_records(make, store, clock):
    """
    Pruning deletes CLOSED, EXPIRED and FAILED records last written over
    ``retain_ended`` ago; it keeps younger ones, LOST and CLOSING ones (they
    may still need a close), and live ones; and it plans the next prune.
    """
    old = to_datetime(clock.time() - 100)
    young = to_datetime(clock.time() - 10)

    def record(sid, state, at):
        return tether.Session(
            id=sid, provider="fake", state=state, created_at=at, updated_at=at
        )

    for r in (
        record("closed-old", S.CLOSED, old),
        record("expired-old", S.EXPIRED, old),
        record("failed-old", S.FAILED, old),
        record("closed-young", S.CLOSED, young),
        record("lost-old", S.LOST, old),
        record("closing-old", S.CLOSING, old),
        record("active-old", S.ACTIVE, old),
    ):
        await store.insert(r)

    async with make(retain_ended=50, on_exit="keep") as manager:
        await manager._jobs.run("prune", "*")
        left = {r.id for r in await manager.list()}
        next_prune = manager._scheduler.due("prune", "*")

    assert {"closed-young", "lost-old", "closing-old", "active-old"} == left
    assert 0 != next_prune


async def test_a_failing_job_never_raises(make, clock):
    """
    Background work reports through logs, never by raising: a store that
    fails mid-job leaves the manager running.
    """
    store = SpyStore(clock=clock.time)
    async with make(store=store) as manager:
        s = await manager.create("fake")
        store.broken = True
        with structlog.testing.capture_logs() as logs:
            await manager._jobs.run("ping", s.id)
        still_tracked = s.id in manager._runtime.tracked
        store.broken = False

    failed = [e for e in logs if e["event"] == "tether.background.failed"]
    assert [("ping", "RuntimeError")] == [(e["job"], e["error"]) for e in failed]
    assert still_tracked


async def test_the_lease_lasts_three_pings_unless_the_policy_says(make):
    """
    A lease lasts three ping intervals (at least 10 s) by default, or the
    health policy's ``lease_ttl``.
    """
    async with make() as manager:
        manager._slots.get("fake")
        default = manager._jobs.lease_ttl("fake")
    async with make(
        health=tether.HealthPolicy(interval=2, jitter=0, lease_ttl=7)
    ) as manager:
        manager._slots.get("fake")
        given = manager._jobs.lease_ttl("fake")
    async with make(health=tether.HealthPolicy(interval=2, jitter=0)) as manager:
        manager._slots.get("fake")
        floor = manager._jobs.lease_ttl("fake")

    assert (30.0, 7.0, 10.0) == (default, given, floor)
