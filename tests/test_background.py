"""
Background work and resilience: pinging, expiry, keepalive, retries, failover,
breakers and admission. Time is a ManualClock: no test sleeps for real.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import attrs
import pytest

import tether
from tether.abc import Capabilities, CreateRequest, RemoteSession
from tether.exceptions import (
    AdmissionError,
    ProviderUnavailableError,
    SessionLostError,
)
from tether.testing import FakeBackend, FakeProvider, ManualClock


S = tether.SessionState
FAST = tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0)


class OnePerKey(FakeProvider):
    """
    A provider whose service allows one live session per API key (like Morpheus).
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, max_sessions_per_credential=1
    )
    peak: ClassVar[int] = 0

    async def create(self, request: CreateRequest) -> RemoteSession:
        remote = await super().create(request)
        live = len(self.backend.live())
        OnePerKey.peak = max(OnePerKey.peak, live)
        return remote


class Other(FakeProvider):
    """
    A second fake provider, for failover across providers.
    """


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="backend")
def _backend(clock: ManualClock) -> FakeBackend:
    return FakeBackend(clock=clock.time)


@pytest.fixture(name="other")
def _other(clock: ManualClock) -> FakeBackend:
    return FakeBackend(clock=clock.time)


@pytest.fixture(name="registry")
def _registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    registry.register("other", Other)
    registry.register("one", OnePerKey)
    return registry


def make(registry, backend, clock, other=None, **kw: Any) -> tether.SessionManager:
    kw.setdefault("retry", FAST)
    kw.setdefault(
        "health", tether.HealthPolicy(interval=10, jitter=0, failures_before_lost=3)
    )
    return tether.SessionManager(
        registry=registry,
        config={
            "fake": {"backend": backend},
            "one": {"backend": backend},
            "other": {"backend": other or FakeBackend(clock=clock.time)},
        },
        clock=clock,
        environ={},
        **kw,
    )


async def collect(
    manager: tether.SessionManager,
    into: list[tether.Event],
    *,
    task_status=anyio.TASK_STATUS_IGNORED,
):
    async with manager.events() as events:
        task_status.started()
        async for event in events:
            into.append(event)


async def test_failed_pings_degrade_then_lose(registry, backend, clock):
    """
    A failed ping makes the session DEGRADED; the third in a row makes it LOST,
    within one interval of reaching the threshold, with events.
    """
    events: list[tether.Event] = []
    async with (
        make(registry, backend, clock) as manager,
        anyio.create_task_group() as tg,
    ):
        await tg.start(collect, manager, events)
        s = await manager.create("fake")
        backend.fail("ping", times=3)

        await clock.advance(10)
        assert S.DEGRADED == (await manager.get(s.id)).state
        await clock.advance(10)
        assert S.DEGRADED == (await manager.get(s.id)).state
        await clock.advance(10)
        lost = await manager.get(s.id)
        tg.cancel_scope.cancel()

    assert S.LOST == lost.state
    assert "3 pings failed" in (lost.error or "")
    kinds = [e.kind for e in events]
    assert tether.EventKind.DEGRADED in kinds
    assert tether.EventKind.LOST in kinds


async def test_gone_is_lost_at_once(registry, backend, clock):
    """
    A service that no longer has the session makes it LOST on the first ping.
    """
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake")
        backend.kill(s.remote_id)

        await clock.advance(10)

        assert S.LOST == (await manager.get(s.id)).state


async def test_degraded_recovers(registry, backend, clock):
    """
    One failed ping, then a good one: DEGRADED, then ACTIVE again.
    """
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake")
        backend.fail("ping")
        await clock.advance(10)
        assert S.DEGRADED == (await manager.get(s.id)).state

        await clock.advance(10)

        assert S.ACTIVE == (await manager.get(s.id)).state
        assert 0 == manager.snapshot().sessions[0].consecutive_failures


async def test_scripted_degraded_state(registry, backend, clock):
    """
    A service reporting the session unwell moves it to DEGRADED with its raw state.
    """
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake")
        backend.script(s.remote_id, ["sick", "running"])

        await clock.advance(10)
        degraded = await manager.get(s.id)
        await clock.advance(10)
        healed = await manager.get(s.id)

    assert (S.DEGRADED, "sick") == (degraded.state, degraded.raw_state)
    assert (S.ACTIVE, "running") == (healed.state, healed.raw_state)


async def test_expiry_fires_at_the_deadline(registry, backend, clock):
    """
    At expires_at the manager closes the remote session and marks it EXPIRED; not before.
    """
    async with make(registry, backend, clock, health_checks=False) as manager:
        s = await manager.create("fake", lifetime=100)

        await clock.advance(99.9)
        assert S.ACTIVE == (await manager.get(s.id)).state
        await clock.advance(0.2)
        expired = await manager.get(s.id)

    assert S.EXPIRED == expired.state
    assert 1 == backend.calls["close"]
    assert set() == backend.live_ids()


async def test_service_reported_expiry(registry, backend, clock):
    """
    A ping that finds the session expired on the service marks it EXPIRED.
    """
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake", lifetime=15)
        backend.script(s.remote_id, ["expired"])

        await clock.advance(10)

        assert S.EXPIRED == (await manager.get(s.id)).state


async def test_keepalive_survives_transient_renew_errors(registry, backend, clock):
    """
    Keepalive renews before the deadline, retrying transient errors until it succeeds.
    """
    async with make(registry, backend, clock, health_checks=False) as manager:
        s = await manager.create("fake", lifetime=100, keepalive=True)
        backend.fail("renew", "unavailable", times=4)  # more than one retry round

        await clock.advance(99)
        renewed = await manager.get(s.id)
        await clock.advance(60)
        later = await manager.get(s.id)

    assert backend.calls["renew"] >= 5
    assert S.ACTIVE == renewed.state
    assert renewed.expires_at.timestamp() > s.expires_at.timestamp()
    assert S.ACTIVE == later.state


async def test_retry_after_is_respected(registry, backend, clock):
    """
    A 429 with Retry-After waits that long (on the manager's clock) before retrying.
    """
    backend.fail("create", "rate_limited", retry_after=7)
    done = anyio.Event()
    async with (
        make(registry, backend, clock) as manager,
        anyio.create_task_group() as tg,
    ):

        async def create() -> None:
            await manager.create("fake")
            done.set()

        tg.start_soon(create)
        await clock.advance(6.9)
        assert 1 == backend.calls["create"]
        assert not done.is_set()
        await clock.advance(0.2)

    assert done.is_set()
    assert 2 == backend.calls["create"]


async def test_budget_is_shared_across_fallbacks(registry, backend, other, clock):
    """
    One attempt budget covers retries and failover candidates: a fallback never resets it.
    """
    backend.fail("create", "unavailable", times=100)
    other.fail("create", "unavailable", times=100)
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake", params={"size": 1}),
            tether.Candidate(provider="other"),
            tether.Candidate(provider="fake", params={"size": 2}),
        ],
        attempts_per_candidate=2,
    )
    async with make(
        registry,
        backend,
        clock,
        other=other,
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
    ) as manager:
        with pytest.raises(ProviderUnavailableError):
            await manager.create(policy)

    assert 3 == backend.calls["create"] + other.calls["create"]
    assert 2 == backend.calls["create"]
    assert 1 == other.calls["create"]


async def test_failover_moves_to_next_candidate(registry, backend, other, clock):
    """
    When the first candidate fails, the session is created on the next, with an event.
    """
    backend.fail("create", "unavailable", times=100)
    events: list[tether.Event] = []
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake"),
            tether.Candidate(provider="other"),
        ]
    )
    async with (
        make(registry, backend, clock, other=other) as manager,
        anyio.create_task_group() as tg,
    ):
        await tg.start(collect, manager, events)
        s = await manager.create(policy)
        await clock.advance(0)
        tg.cancel_scope.cancel()

    assert "other" == s.provider
    failovers = [e for e in events if e.kind is tether.EventKind.FAILOVER]
    assert [("fake", "other")] == [(e.data["from"], e.data["to"]) for e in failovers]


async def test_lost_session_is_recreated_on_next_candidate(
    registry, backend, other, clock
):
    """
    With recreate_lost, a session that becomes LOST is re-created on the next
    candidate, and the event names the old and the new.
    """
    events: list[tether.Event] = []
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake"),
            tether.Candidate(provider="other"),
        ],
        recreate_lost=True,
    )
    async with (
        make(registry, backend, clock, other=other) as manager,
        anyio.create_task_group() as tg,
    ):
        await tg.start(collect, manager, events)
        s = await manager.create(policy, labels={"job": "7"})
        backend.kill(s.remote_id)
        await clock.advance(10)
        tg.cancel_scope.cancel()
        old = await manager.get(s.id)
        live = await manager.list(state=S.ACTIVE)

    assert S.LOST == old.state
    assert 1 == len(live)
    new = live[0]
    assert ("other", {"job": "7"}) == (new.provider, dict(new.labels))
    assert new.id == old.data["replaced_by"]
    failover = [
        e for e in events if e.kind is tether.EventKind.FAILOVER and "old" in e.data
    ]
    assert [(s.id, new.id)] == [(e.data["old"], e.data["new"]) for e in failover]


async def test_breaker_opens_waits_probes_closes(registry, backend, clock):
    """
    Failures open the breaker; while open, a create waits for the cooldown, then
    probes half-open, and success closes it.
    """
    events: list[tether.Event] = []
    async with (
        make(
            registry,
            backend,
            clock,
            retry=tether.RetryPolicy(attempts=1, wait_initial=0, wait_max=0),
            breakers=tether.BreakerPolicy(failure_threshold=2, cooldown=30),
        ) as manager,
        anyio.create_task_group() as tg,
    ):
        await tg.start(collect, manager, events)
        backend.fail("create", "unavailable", times=2)
        for _ in range(2):
            with pytest.raises(ProviderUnavailableError):
                await manager.create("fake")
        assert tether.BreakerState.OPEN == manager.snapshot().providers["fake"].breaker

        created: list[tether.Session] = []

        async def create() -> None:
            created.append(await manager.create("fake"))

        tg.start_soon(create)
        await clock.advance(29)
        assert [] == created
        assert 2 == backend.calls["create"]
        await clock.advance(2)
        await clock.advance(0)
        breaker = manager.snapshot().providers["fake"].breaker
        tg.cancel_scope.cancel()

    assert 1 == len(created)
    assert tether.BreakerState.CLOSED == breaker
    kinds = [e.kind for e in events]
    assert [
        tether.EventKind.BREAKER_OPENED,
        tether.EventKind.BREAKER_HALF_OPEN,
        tether.EventKind.BREAKER_CLOSED,
    ] == [k for k in kinds if k.value.startswith("breaker")]


async def test_open_breaker_fails_fast_within_caller_deadline(registry, backend, clock):
    """
    When every candidate cools down longer than the caller's deadline allows, create fails at once.
    """
    async with make(
        registry,
        backend,
        clock,
        retry=tether.RetryPolicy(attempts=1, wait_initial=0, wait_max=0),
        breakers=tether.BreakerPolicy(failure_threshold=1, cooldown=3600),
    ) as manager:
        backend.fail("create", "unavailable")
        with pytest.raises(ProviderUnavailableError):
            await manager.create("fake")
        with anyio.fail_after(5):
            with pytest.raises(
                ProviderUnavailableError, match="circuit breakers are open"
            ):
                await manager.create("fake")

    assert 1 == backend.calls["create"]


async def test_admission_limit_holds_under_100_concurrent_creates(
    registry, backend, clock
):
    """
    With one session per key and the reject policy, 100 concurrent creates give
    one session and 99 AdmissionErrors; the service sees one create.
    """
    results: list[object] = []
    async with make(
        registry, backend, clock, admission=tether.AdmissionPolicy(mode="reject")
    ) as manager:

        async def create() -> None:
            try:
                results.append(await manager.create("one"))
            except AdmissionError as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(create)

    assert 1 == sum(isinstance(r, tether.Session) for r in results)
    assert 99 == sum(isinstance(r, AdmissionError) for r in results)
    assert 1 == backend.calls["create"]


async def test_admission_wait_serialises_sessions(registry, backend, clock):
    """
    With the wait policy, 100 concurrent users of one key each get a session in
    turn, and the service never holds two at once.
    """
    OnePerKey.peak = 0
    served = 0
    async with make(
        registry,
        backend,
        clock,
        admission=tether.AdmissionPolicy(mode="wait", timeout=60),
    ) as manager:

        async def use() -> None:
            nonlocal served
            async with manager.session("one"):
                served += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(use)

    assert 100 == served
    assert 100 == backend.calls["create"]
    assert 1 == OnePerKey.peak


async def test_admission_replace_closes_the_old(registry, backend, clock):
    """
    With the replace policy, a second create closes the key's first session before creating.
    """
    async with make(
        registry, backend, clock, admission=tether.AdmissionPolicy(mode="replace")
    ) as manager:
        first = await manager.create("one")
        second = await manager.create("one")

        assert S.CLOSED == (await manager.get(first.id)).state
        assert {second.remote_id} == backend.live_ids()


async def test_admission_wait_times_out(registry, backend, clock):
    """
    With the wait policy, a create that finds no free slot in time raises AdmissionError.
    """
    async with make(
        registry,
        backend,
        clock,
        admission=tether.AdmissionPolicy(mode="wait", timeout=0.05),
    ) as manager:
        await manager.create("one")
        with pytest.raises(AdmissionError, match="waited"):
            await manager.create("one")

    assert 1 == backend.calls["create"]


async def test_admission_wait_sees_a_slot_freed_by_another_manager(
    registry, backend, clock
):
    """
    Two managers share one store (two workers of a service): a create waiting
    for the key's one slot in the second is admitted when the first frees it,
    though the first cannot tell the second. It looks again every
    ``poll_interval`` seconds.
    """
    store = tether.MemoryStore()
    waiting = tether.AdmissionPolicy(mode="wait", timeout=10, poll_interval=0.01)
    async with (
        make(registry, backend, clock, store=store) as first,
        make(registry, backend, clock, store=store, admission=waiting) as second,
    ):
        held = await first.create("one")
        admitted: list[tether.Session] = []

        async def wait_for_the_slot() -> None:
            admitted.append(await second.create("one"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_the_slot)
                await anyio.sleep(0.05)
                assert [] == admitted  # still waiting
                await first.close(held)

    assert S.ACTIVE == admitted[0].state
    assert 2 == backend.calls["create"]


def test_admission_poll_interval_is_checked():
    """
    A poll interval that is not a positive number of seconds is refused.
    """
    with pytest.raises(tether.exceptions.ConfigError, match="poll_interval"):
        tether.AdmissionPolicy(poll_interval=0)


async def test_scope_is_cancelled_when_session_is_lost(registry, backend, clock):
    """
    Work in manager.scope(s) is cancelled the moment the session is LOST, and
    SessionLostError says why.
    """
    reached_end = False
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake")

        async def kill_later() -> None:
            backend.kill(s.remote_id)
            await clock.advance(10)

        async with anyio.create_task_group() as tg:
            with pytest.raises(SessionLostError):
                async with manager.scope(s):
                    tg.start_soon(kill_later)
                    await anyio.sleep_forever()
                    reached_end = True

    assert not reached_end


async def test_snapshot(registry, backend, clock):
    """
    snapshot() reports per-provider counts and breakers, and per-session last ping and time to expiry.
    """
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake", lifetime=100)
        await clock.advance(10)
        snap = manager.snapshot()

    assert {"active": 1} == dict(snap.providers["fake"].sessions)
    (one,) = snap.sessions
    assert (s.id, True, 0) == (one.id, one.last_ping_ok, one.consecutive_failures)
    assert 90 == pytest.approx(one.seconds_to_expiry)


async def test_lost_sessions_are_closed_on_exit(registry, backend, clock):
    """
    A session LOST to failed pings may still run on the service: leaving the
    manager asks the service to end it, and the record stays LOST.
    """
    async with make(registry, backend, clock) as manager:
        s = await manager.create("fake")
        backend.fail("ping", times=3)
        for _ in range(3):
            await clock.advance(10)
        assert S.LOST == (await manager.get(s.id)).state
        assert s.remote_id in backend.live_ids()
        store = manager._store

    assert set() == backend.live_ids()
    assert S.LOST == (await store.get(s.id)).state


async def test_failed_create_emits_an_event(registry, backend, clock):
    """
    A create that fails for good emits create_failed with the reason.
    """
    events: list[tether.Event] = []
    async with (
        make(registry, backend, clock) as manager,
        anyio.create_task_group() as tg,
    ):
        await tg.start(collect, manager, events)
        backend.fail("create", "auth")
        with pytest.raises(tether.exceptions.AuthError):
            await manager.create("fake")
        await clock.advance(0)
        tg.cancel_scope.cancel()

    (failed,) = [e for e in events if e.kind is tether.EventKind.CREATE_FAILED]
    assert S.FAILED == failed.session.state
    assert "AuthError" in failed.detail


async def test_ended_records_are_pruned_after_retain_ended(registry, backend, clock):
    """
    A long-running manager does not keep every session it ever ended: records
    of closed, expired and failed sessions go from the store ``retain_ended``
    seconds after they ended. Live and LOST ones stay (LOST may still need a
    close), and so does everything with ``retain_ended=None``.
    """
    async with (
        make(registry, backend, clock, retain_ended=100) as manager,
        make(registry, backend, clock, retain_ended=None) as keeper,
    ):
        closed = await manager.close(await manager.create("fake"))
        kept = await keeper.close(await keeper.create("fake"))
        live = await manager.create("fake")
        lost = await manager.create("fake")
        backend.kill(lost.remote_id)
        await manager.ping(lost)
        assert S.LOST == (await manager.get(lost.id)).state

        await clock.advance(60)
        assert S.CLOSED == (await manager.get(closed.id)).state  # not yet
        await clock.advance(100)

        with pytest.raises(tether.exceptions.SessionNotFoundError):
            await manager.get(closed.id)
        assert S.ACTIVE == (await manager.get(live.id)).state
        assert S.LOST == (await manager.get(lost.id)).state
        assert S.CLOSED == (await keeper.get(kept.id)).state


@pytest.mark.parametrize("retain_ended", [0, -1, float("nan"), "1h", True])
def test_retain_ended_is_checked(retain_ended):
    """
    A retention that is not a positive number of seconds is refused at once.
    """
    with pytest.raises(tether.exceptions.ConfigError, match="retain_ended"):
        tether.SessionManager(retain_ended=retain_ended)


class FlakyStore(tether.MemoryStore):
    """
    A store that is unavailable while ``down`` is set (its claims fail).
    """

    down = False

    async def claim(self, session_id, owner, ttl):
        if self.down:
            raise tether.exceptions.StoreUnavailableError(
                "store down", store="flaky", operation="claim"
            )
        return await super().claim(session_id, owner, ttl)


async def test_a_store_outage_does_not_drop_a_session_from_watch(
    registry, backend, clock
):
    """
    A background ping the store cannot serve is tried again soon, and pinging
    goes on once the store is back: the session never falls out of watch.
    """
    store = FlakyStore()
    async with make(registry, backend, clock, store=store) as manager:
        s = await manager.create("fake")
        store.down = True
        await clock.advance(10)
        assert 0 == backend.calls["ping"]
        assert s.id in {t.id for t in manager.snapshot().sessions}

        store.down = False
        await clock.advance(5)
        await clock.advance(10)

        assert backend.calls["ping"] >= 1


async def test_when_every_candidate_fails_the_error_names_each(
    registry, backend, other, clock
):
    """
    A failover whose every candidate failed raises the last error, whose notes
    and ``failover_causes`` list each candidate and its own cause.
    """
    backend.fail("create", "auth", times=100)
    other.fail("create", "unavailable", times=100)
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake"),
            tether.Candidate(provider="other"),
        ],
        attempts_per_candidate=1,
    )
    async with make(registry, backend, clock, other=other) as manager:
        with pytest.raises(tether.ProviderUnavailableError) as info:
            await manager.create(policy)

    causes = info.value.failover_causes
    assert [("fake", tether.AuthError), ("other", tether.ProviderUnavailableError)] == [
        (key, type(exc)) for key, exc in causes
    ]
    [note] = info.value.__notes__
    assert "fake: AuthError" in note
    assert "other: ProviderUnavailableError" in note
