"""
The Scheduler on its own: a deadline heap on the manager's clock, fed to a
fixed pool of workers, and the plan that puts a tracked session's jobs on it.

Each test runs a real Scheduler over a bare Runtime and Slots; the "runner"
records what it was handed and when (on the ManualClock).
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

import tether
from tether._clock import to_datetime
from tether._lifecycle.runtime import Tracked
from tether._lifecycle.scheduler import Scheduler


S = tether.SessionState


def session(clock, session_id="s1", **kw) -> tether.Session:
    now = to_datetime(clock.time())
    kw.setdefault("state", S.ACTIVE)
    return tether.Session(
        id=session_id, provider="fake", created_at=now, updated_at=now, **kw
    )


class Runner:
    """
    Records each job it is handed, with the clock's time.
    """

    def __init__(self, clock) -> None:
        self.clock = clock
        self.ran: list[tuple[str, str, float]] = []

    async def __call__(self, kind: str, session_id: str) -> None:
        self.ran.append((kind, session_id, self.clock.time()))


@pytest.fixture(name="scheduler")
def _scheduler(runtime, slots) -> Scheduler:
    return Scheduler(runtime, slots)


async def test_a_job_runs_when_its_deadline_comes_not_before(runtime, scheduler, clock):
    """
    A scheduled job is handed to a worker once the clock reaches its time, with
    the clock showing that time, and only once.
    """
    runtime.tracked["s1"] = Tracked(session_id="s1", provider="fake")
    runner = Runner(clock)
    t0 = clock.time()
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, runner, workers=2)
        scheduler.schedule("ping", "s1", t0 + 10)

        await clock.advance(9.5)
        assert [] == runner.ran
        await clock.advance(0.5)
        assert [("ping", "s1", t0 + 10)] == runner.ran
        await clock.advance(100)
        tg.cancel_scope.cancel()

    assert 1 == len(runner.ran)
    assert 0 == runtime.tracked["s1"].ping_seq  # no live entry left


async def test_rescheduling_replaces_the_earlier_plan(runtime, scheduler, clock):
    """
    Each job kind of a session has one live entry: a later schedule() replaces
    the earlier one, whose heap entry is skipped when it comes due.
    """
    runtime.tracked["s1"] = Tracked(session_id="s1", provider="fake")
    runner = Runner(clock)
    t0 = clock.time()
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, runner, workers=1)
        scheduler.schedule("ping", "s1", t0 + 10)
        scheduler.schedule("ping", "s1", t0 + 20)
        await clock.advance(30)
        tg.cancel_scope.cancel()

    assert [("ping", "s1", t0 + 20)] == runner.ran


async def test_an_earlier_job_wakes_the_sleeping_scheduler(runtime, scheduler, clock):
    """
    While the scheduler naps until a far deadline, a job scheduled earlier
    still runs at its own time.
    """
    for sid in ("far", "near"):
        runtime.tracked[sid] = Tracked(session_id=sid, provider="fake")
    runner = Runner(clock)
    t0 = clock.time()
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, runner, workers=1)
        scheduler.schedule("expire", "far", t0 + 100)
        await clock.advance(1)  # now asleep until t0 + 100
        scheduler.schedule("expire", "near", t0 + 5)
        await clock.advance(10)
        ran_by_then = list(runner.ran)
        await clock.advance(100)
        tg.cancel_scope.cancel()

    assert [("expire", "near", t0 + 5)] == ran_by_then
    assert [("expire", "near", t0 + 5), ("expire", "far", t0 + 100)] == runner.ran


async def test_jobs_of_sessions_not_tracked_never_run(runtime, scheduler, clock):
    """
    Only tracked sessions have background work: scheduling for an unknown one
    is ignored, and a session untracked after scheduling has its entry skipped.
    """
    runtime.tracked["s1"] = Tracked(session_id="s1", provider="fake")
    runner = Runner(clock)
    t0 = clock.time()
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, runner, workers=1)
        scheduler.schedule("ping", "nobody", t0 + 1)
        assert 0 == len(scheduler)
        scheduler.schedule("ping", "s1", t0 + 2)
        runtime.untrack("s1")
        await clock.advance(10)
        tg.cancel_scope.cancel()

    assert [] == runner.ran


async def test_manager_wide_jobs_need_no_tracked_session(scheduler, clock):
    """
    The sweep and the prune belong to the manager ("*"), not to a session.
    """
    runner = Runner(clock)
    t0 = clock.time()
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, runner, workers=1)
        scheduler.schedule("sweep", "*", t0 + 1)
        scheduler.schedule("prune", "*", t0 + 2)
        assert scheduler.due("sweep", "*") != 0
        await clock.advance(5)
        tg.cancel_scope.cancel()

    assert [("sweep", "*", t0 + 1), ("prune", "*", t0 + 2)] == runner.ran
    assert 0 == scheduler.due("sweep", "*")


async def test_a_burst_waits_for_the_fixed_pool_of_workers(runtime, scheduler, clock):
    """
    Due jobs go to at most ``workers`` runners at once; the rest wait their turn.
    """
    for sid in ("a", "b", "c"):
        runtime.tracked[sid] = Tracked(session_id=sid, provider="fake")
    release = anyio.Event()
    running: list[str] = []
    done: list[str] = []

    async def blocking(kind: str, session_id: str) -> None:
        running.append(session_id)
        await release.wait()
        done.append(session_id)

    t0 = clock.time()
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, blocking, workers=2)
        for sid in ("a", "b", "c"):
            scheduler.schedule("ping", sid, t0 + 1)
        await clock.advance(1)
        assert 2 == len(running)
        release.set()
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()

    assert ["a", "b", "c"] == sorted(done)


async def test_plan_puts_ping_expiry_and_keepalive_on_the_heap(
    runtime, slots, scheduler, clock
):
    """
    track() plans a live session's ping one interval ahead, its expiry at the
    deadline, and (with keepalive) its renewal a margin before the deadline:
    20% of the lifetime, at least 1 s, at most half of it.
    """
    slots.get("fake")  # a loaded provider: pinged every 10 s (health interval)
    runner = Runner(clock)
    t0 = clock.time()
    s = session(
        clock,
        expires_at=to_datetime(t0 + 100),
        lifetime=100.0,
        keepalive=True,
    )
    async with anyio.create_task_group() as tg:
        await scheduler.start(tg, runner, workers=1)
        scheduler.track(s)
        assert runtime.tracked["s1"].expires_at == t0 + 100
        await clock.advance(100)
        tg.cancel_scope.cancel()

    assert [
        ("ping", "s1", t0 + 10),
        ("renew", "s1", t0 + 80),
        ("expire", "s1", t0 + 100),
    ] == runner.ran


async def test_plan_skips_ended_sessions_and_disabled_health(
    runtime_factory, slots_factory, clock
):
    """
    Nothing is planned for a session that is not live, and no ping when
    background health checks are off (its expiry still is).
    """
    runtime = runtime_factory(health=tether.HealthPolicy(enabled=False, interval=10))
    slots = slots_factory(runtime)
    try:
        slots.get("fake")
        scheduler = Scheduler(runtime, slots)
        t0 = clock.time()
        scheduler.track(session(clock, "gone", state=S.CLOSED))
        assert 0 == len(scheduler)
        scheduler.track(session(clock, "s1", expires_at=to_datetime(t0 + 50)))
        tracked = runtime.tracked["s1"]
        assert 0 == tracked.ping_seq
        assert 0 != tracked.expire_seq
        assert 0 == tracked.renew_seq
        assert 1 == len(scheduler)
    finally:
        await slots.aclose()


async def test_no_ping_is_planned_before_the_provider_is_loaded(
    runtime, scheduler, clock
):
    """
    A session whose provider is not running here yet gets no ping planned
    (the interval is the provider's), only its expiry.
    """
    scheduler.track(
        session(clock, expires_at=to_datetime(clock.time()) + timedelta(seconds=5))
    )
    tracked = runtime.tracked["s1"]
    assert (0, 0) == (tracked.ping_seq, tracked.renew_seq)
    assert 0 != tracked.expire_seq


async def test_track_keeps_the_failover_policy_and_candidate(runtime, scheduler, clock):
    """
    Tracking a session made by a failover policy remembers the policy and the
    candidate it was made on (for a re-create if it is lost); tracking it again
    without one keeps them.
    """
    candidate = tether.Candidate(provider="fake")
    policy = tether.FailoverPolicy(candidates=[candidate], recreate_lost=True)
    scheduler.track(session(clock), failover=policy, candidate=candidate)
    scheduler.track(session(clock, state=S.DEGRADED))

    tracked = runtime.tracked["s1"]
    assert (policy, candidate, S.DEGRADED) == (
        tracked.failover,
        tracked.candidate,
        tracked.state,
    )


async def test_jitter_spreads_within_the_policy_fraction(
    runtime_factory, slots_factory
):
    """
    Pings spread by plus or minus jitter times the interval, never below a millisecond.
    """
    runtime = runtime_factory(health=tether.HealthPolicy(interval=10, jitter=0.5))
    scheduler = Scheduler(runtime, slots_factory(runtime))
    values = [scheduler.jittered(10.0) for _ in range(500)]

    assert all(5.0 <= v <= 15.0 for v in values)
    assert max(values) - min(values) > 1.0  # spread, not constant
    assert 0.001 <= scheduler.jittered(0.0)
