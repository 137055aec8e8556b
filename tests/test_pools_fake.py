"""
Pools over the in-memory FakeProvider: failing refills, reusable providers,
resets that fail, and the settings a pool refuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import attrs
import pytest
from structlog.testing import capture_logs

import tether
from tether.abc import Capabilities
from tether.exceptions import ConfigError, ProviderUnavailableError
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def until(predicate: Callable[[], bool], *, within: float = 20.0) -> None:
    """
    Wait for *predicate* (liveness, with a generous margin).
    """
    with anyio.fail_after(within):
        # Polling: the state is the pool's, which has no event per figure.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


class ReusableFake(FakeProvider):
    """
    A fake whose sessions keep nothing between uses.
    """

    reusable = True


class BrokenReset(FakeProvider):
    """
    A fake whose reset fails on the service.
    """

    async def reset(self, session: tether.Session) -> bool:
        msg = "reset failed"
        raise ProviderUnavailableError(msg, provider=self.name, operation="reset")


@pytest.fixture(name="backend")
def _backend() -> FakeBackend:
    """
    The fake service.
    """
    return FakeBackend()


@pytest.fixture(name="manager")
async def _manager(backend: FakeBackend) -> AsyncIterator[tether.SessionManager]:
    """
    A manager over three fakes sharing one backend, no background pings.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    registry.register("reusable", ReusableFake)
    registry.register("broken", BrokenReset)
    config = {"backend": backend}
    async with tether.SessionManager(
        registry=registry,
        config={"fake": config, "reusable": config, "broken": config},
        retry=tether.RetryPolicy(attempts=1, wait_initial=0, wait_max=0),
        clock=ManualClock(),
        health_checks=False,
        environ={},
    ) as manager:
        yield manager


async def used(pool: tether.Pool[Any]) -> str:
    """
    Acquire a session, run an operation on it, and return its id.
    """
    async with pool.acquire() as handle:
        await handle.run("noop", lambda _: anyio.lowlevel.checkpoint())
    return handle.id


async def test_failed_refills_back_off_and_recover(
    manager: tether.SessionManager, backend: FakeBackend
) -> None:
    """
    Creates that fail are logged and retried with back-off; the pool fills
    once the service recovers.
    """
    backend.fail("create", times=3)
    with capture_logs() as logs:
        pool = manager.pool("fake", min_idle=2)
        with anyio.fail_after(30):
            await pool.wait_ready()

    failed = [e for e in logs if e["event"] == "tether.pool.refill_failed"]
    assert 3 == len(failed)
    assert {"ProviderUnavailableError"} == {e["error"] for e in failed}
    assert 2 == len(backend.live_ids())


async def test_a_reusable_providers_used_sessions_are_reused(
    manager: tether.SessionManager,
) -> None:
    """
    A provider that declares its sessions reusable gets them back after use.
    """
    pool = manager.pool("reusable", max_size=1)

    first, second = await used(pool), await used(pool)

    assert first == second
    assert (0, 2) == (pool.snapshot().recycled, pool.snapshot().reset)


async def test_a_reset_that_fails_closes_the_session(
    manager: tether.SessionManager, backend: FakeBackend
) -> None:
    """
    A reset that raises counts as "not clean": the session is closed.
    """
    pool = manager.pool("broken", max_size=1)

    first = await used(pool)
    second = await used(pool)

    assert first != second
    assert 2 == pool.snapshot().recycled
    assert set() == backend.live_ids()


async def test_a_block_that_raises_hands_back_a_session_that_is_closed(
    manager: tether.SessionManager, backend: FakeBackend
) -> None:
    """
    The state of a session whose block failed is unknown: it is not reused.
    """
    pool = manager.pool("reusable", max_size=1)
    with pytest.raises(RuntimeError):
        async with pool.acquire() as handle:
            raise RuntimeError

    assert 1 == pool.snapshot().recycled
    assert tether.SessionState.CLOSED == (await manager.get(handle.id)).state
    assert set() == backend.live_ids()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"min_remaining": -1}, "min_remaining"),
        ({"ping_on_acquire": "yes"}, "ping_on_acquire"),
        ({"lifetime": 0}, "lifetime"),
        ({"min_idle": 1.5}, "min_idle"),
        ({"max_size": True}, "max_size"),
    ],
)
async def test_bad_settings_are_config_errors(
    manager: tether.SessionManager,
    backend: FakeBackend,
    settings: dict[str, Any],
    match: str,
) -> None:
    """
    Each bad setting names itself, and nothing is created.
    """
    with pytest.raises(ConfigError, match=match):
        manager.pool("fake", **{"min_idle": 1, **settings})
    await anyio.sleep(0.05)

    assert set() == backend.live_ids()


async def test_a_failover_pool_takes_parameters_per_candidate(
    manager: tether.SessionManager,
) -> None:
    """
    Parameters beside a FailoverPolicy are refused, as create refuses them;
    a timedelta lifetime is accepted.
    """
    policy = tether.FailoverPolicy(candidates=[tether.Candidate(provider="fake")])

    with pytest.raises(ConfigError, match="Candidate"):
        manager.pool(policy, size=2)
    pool = manager.pool(policy, lifetime=timedelta(minutes=5))

    assert pool.name.startswith("fake-")
    assert pool is manager.pool(policy, lifetime=300)


async def test_an_acquire_cancelled_while_the_pool_closes_leaks_nothing(
    backend: FakeBackend,
) -> None:
    """
    A caller cancelled while its session is being checked, after the pool
    closed its idle set: the session is closed, not put back into a pool
    that closes nothing any more (even under on_exit="keep").
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=ManualClock(),
        health_checks=False,
        on_exit="keep",
        environ={},
    ) as manager:
        pool = manager.pool("fake", min_idle=1)
        await pool.wait_ready()
        entered, _ = backend.gate("ping")
        scope = anyio.CancelScope()

        async def take() -> None:
            with scope:
                async with pool.acquire():
                    pass  # never reached: the check never ends

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            with anyio.fail_after(20):
                await entered.wait()
            await pool.aclose()
            scope.cancel()
        idle = pool.snapshot().idle

    assert 0 == idle
    assert set() == backend.live_ids()


class TwoPerKey(FakeProvider):
    """
    A fake whose service allows two live sessions per credential.
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, max_sessions_per_credential=2
    )


@pytest.mark.parametrize("mode", ["replace", "wait"])
async def test_a_failover_pools_refills_neither_replace_nor_wait(
    backend: FakeBackend, mode: str
) -> None:
    """
    The first candidate's credential is full with someone's sessions. Under
    admission "replace" a refill must not close them, under "wait" it must
    not wait for them: it fails over to the next candidate.
    """
    other = FakeBackend()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("two", TwoPerKey)
    registry.register("other", FakeProvider)
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="two"),
            tether.Candidate(provider="other"),
        ]
    )
    async with tether.SessionManager(
        registry=registry,
        config={"two": {"backend": backend}, "other": {"backend": other}},
        retry=tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        admission=tether.AdmissionPolicy(mode=mode, timeout=600),  # type: ignore[arg-type]
        clock=ManualClock(),
        health_checks=False,
        environ={},
    ) as manager:
        mine = {(await manager.create("two")).remote_id for _ in range(2)}
        pool = manager.pool(policy, min_idle=2)
        with anyio.fail_after(20):
            await pool.wait_ready()
        providers = {(await manager.get(sid)).provider for sid in pool.idle_ids()}
        live = backend.live_ids()

    assert mine == live
    assert {"other"} == providers


async def test_a_create_for_a_caller_that_lands_after_the_pool_closed_is_closed(
    backend: FakeBackend,
) -> None:
    """
    A caller's own create still under way when the pool closes: the session
    it brings is closed and the caller gets ManagerStateError (nothing else
    would close it, under on_exit="keep").
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=ManualClock(),
        health_checks=False,
        on_exit="keep",
        environ={},
    ) as manager:
        pool = manager.pool("fake", min_idle=0)
        entered, release = backend.gate("create")
        errors: list[BaseException] = []

        async def take() -> None:
            try:
                async with pool.acquire():
                    pass
            except tether.ManagerStateError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            with anyio.fail_after(20):
                await entered.wait()
            await pool.aclose()
            release.set()

    assert 1 == len(errors)
    assert set() == backend.live_ids()


async def test_a_degraded_idle_session_is_replaced_not_handed_out(
    manager: tether.SessionManager, backend: FakeBackend
) -> None:
    """
    The service reports an idle session degraded: the ping before hand-out
    finds it so, the pool closes it on the service (pool.replaced) and hands
    out a healthy one, then tops up again.
    """
    pool = manager.pool("fake", min_idle=2, max_size=3)
    with anyio.fail_after(20):
        await pool.wait_ready()
    victim = pool.idle_ids()[0]
    remote = (await manager.get(victim)).remote_id or ""
    backend.script(remote, ["sick"])
    async with manager.events() as events:
        async with pool.acquire() as handle:
            handed = (await manager.get(handle.id)).remote_id
        replaced = await events.receive()
        while replaced.kind is not tether.EventKind.POOL_REPLACED:
            replaced = await events.receive()
    await until(lambda: pool.snapshot().idle == 2 and victim not in pool.idle_ids())
    await until(lambda: backend.sessions[remote].state == "closed")
    idle = {(await manager.get(sid)).remote_id for sid in pool.idle_ids()}

    assert handed != remote
    assert victim == replaced.data["session_id"]
    assert "degraded" in (replaced.detail or "")
    assert idle == backend.live_ids()
    assert 1 == pool.snapshot().replaced


async def test_idle_sessions_background_pings_find_degraded_are_replaced(
    backend: FakeBackend,
) -> None:
    """
    Idle sessions are pinged like any other: one a background ping finds
    degraded is replaced with no caller asking, and never handed out.
    """
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=clock,
        health=tether.HealthPolicy(interval=10, jitter=0),
        environ={},
    ) as manager:
        pool = manager.pool("fake", min_idle=2, max_size=3)
        with anyio.fail_after(20):
            await pool.wait_ready()
        victim = pool.idle_ids()[0]
        remote = (await manager.get(victim)).remote_id or ""
        backend.script(remote, ["sick"])
        await clock.advance(10)  # the background pings run
        await until(lambda: pool.snapshot().replaced == 1)
        await until(lambda: pool.snapshot().idle == 2)
        state = (await manager.get(victim)).state
        handed = []
        for _ in range(2):
            async with pool.acquire() as handle:
                handed.append(handle.id)
        idle = {(await manager.get(sid)).remote_id for sid in pool.idle_ids()}
        live = backend.live_ids()

    assert victim not in handed
    assert victim not in pool.idle_ids()
    assert state in {tether.SessionState.CLOSING, tether.SessionState.CLOSED}
    assert "closed" == backend.sessions[remote].state
    assert idle == live


class Listed:
    """
    A store from before count_live(): the protocol's methods only, over a
    MemoryStore, counting the listings of one provider's records.
    """

    def __init__(self) -> None:
        self.inner = tether.MemoryStore()
        self.listings = 0

    async def insert(
        self, session: tether.Session, *, credential_limit: int | None = None
    ) -> tether.Session:
        return await self.inner.insert(session, credential_limit=credential_limit)

    async def update(
        self, session: tether.Session, *, fence: int | None = None
    ) -> tether.Session:
        return await self.inner.update(session, fence=fence)

    async def get(self, session_id: str) -> tether.Session | None:
        return await self.inner.get(session_id)

    async def list(
        self,
        *,
        provider: str | None = None,
        states: Sequence[tether.SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[tether.Session]:
        if provider is not None:
            self.listings += 1
        return await self.inner.list(provider=provider, states=states, labels=labels)

    async def delete(self, session_id: str) -> None:
        await self.inner.delete(session_id)

    async def claim(self, session_id: str, owner: str, ttl: float) -> int | None:
        return await self.inner.claim(session_id, owner, ttl)

    async def release(self, session_id: str, owner: str) -> None:
        await self.inner.release(session_id, owner)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Counted(Listed):
    """
    The same store with count_live(), counting its counts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts = 0

    async def count_live(self, provider: str, credential: str) -> int:
        self.counts += 1
        return await self.inner.count_live(provider, credential)


@pytest.mark.parametrize("store_class", [Counted, Listed])
async def test_refills_wait_for_room_by_counting_not_listing(
    backend: FakeBackend, store_class: type[Listed]
) -> None:
    """
    A pool whose credential is full (2 of 2) looks again and again for room:
    by the store's count_live(), without listing records; a store without
    it is listed instead. Either way the pool refills once a session is
    closed, and the limit holds on the service.
    """
    store = store_class()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("two", TwoPerKey)
    async with tether.SessionManager(
        registry=registry,
        config={"two": {"backend": backend}},
        store=store,
        clock=ManualClock(),
        health_checks=False,
        environ={},
    ) as manager:
        mine = [await manager.create("two") for _ in range(2)]
        pool = manager.pool("two", min_idle=1)
        looked = (
            (lambda: store.counts)
            if isinstance(store, Counted)
            else (lambda: store.listings)
        )
        await until(lambda: looked() >= 3)
        listed = store.listings
        await manager.close(mine[0])
        with anyio.fail_after(20):
            await pool.wait_ready()
        live = backend.live_ids()

    assert 2 == len(live)
    assert mine[1].remote_id in live
    if isinstance(store, Counted):
        assert 0 == listed
