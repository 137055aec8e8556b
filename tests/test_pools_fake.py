"""
Pools over the in-memory FakeProvider: failing refills, reusable providers,
resets that fail, and the settings a pool refuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
