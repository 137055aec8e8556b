"""
Warm pools on Redis with watch workers owning sessions by shard: a pool keeps
the sessions another worker watches, a gone manager's pooled sessions are
closed by reconcile whoever watches them, and a manager's exit closes every
session its pools made. Ground truth: the FakeBackend's live sessions.

Managers here run in this process on real time (Redis expires memberships by
its own clock); waits have generous deadlines, and what is asserted is safety.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

import tether
from tether.stores import RedisStore
from tether.testing import FakeBackend, FakeProvider


pytest.importorskip("redis")

HEALTH = tether.HealthPolicy(interval=0.5, lease_ttl=2.0)


async def until(predicate: Callable[[], bool], *, within: float = 30.0) -> None:
    """
    Wait for *predicate* (liveness, with a generous margin).
    """
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 -- polling figures
            await anyio.sleep(0.02)


class Fleet:
    """
    Managers sharing one Redis namespace and one fake service.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"t{uuid.uuid4().hex}"
        self.backend = FakeBackend()

    @contextlib.asynccontextmanager
    async def manager(self, **kw: Any) -> AsyncIterator[tether.SessionManager]:
        registry = tether.ProviderRegistry(entry_points=False)
        registry.register("fake", FakeProvider)
        store = RedisStore(self.url, namespace=self.namespace, shards=16)
        kw.setdefault("health", HEALTH)
        kw.setdefault("on_exit", "keep")
        try:
            async with tether.SessionManager(
                registry=registry,
                store=store,
                config={"fake": {"backend": self.backend}},
                environ={},
                **kw,
            ) as manager:
                yield manager
        finally:
            await store.aclose()


def shards(manager: tether.SessionManager) -> dict[int, int]:
    """
    The shards a watch worker holds now.
    """
    return dict(manager._jobs._shards._owned)


@pytest.fixture(name="fleet")
def _fleet(redis_url: str) -> Fleet:
    return Fleet(redis_url)


async def test_a_pool_keeps_the_sessions_another_worker_watches(
    fleet: Fleet,
) -> None:
    """
    With two watch workers, about half a pool's sessions fall in the other
    worker's shards; the pool keeps them (they are alive), hands them out,
    takes them back, and replaces none: no churn while nothing ended.
    """
    async with (
        fleet.manager(watch=True) as other,
        fleet.manager(watch=True) as owner,
    ):
        pool = owner.pool("fake", min_idle=4, max_size=6)
        await until(lambda: pool.snapshot().idle == 4)
        # Both workers hold shards (each its share), and each pooled session
        # is watched by exactly one of them: most likely some by the other.
        await until(lambda: bool(shards(owner) and shards(other)))
        await until(
            lambda: all(
                (sid in owner._runtime.tracked) != (sid in other._runtime.tracked)
                for sid in pool.idle_ids()
            )
        )
        await anyio.sleep(3)  # a few pings, ticks and pool sweeps
        steady = pool.snapshot()
        live = fleet.backend.live_ids()
        for _ in range(4):
            async with pool.acquire():
                pass
        used = pool.snapshot()
    left = fleet.backend.live_ids()

    assert (4, 0, 4) == (steady.refills, steady.replaced, steady.idle)
    assert 4 == len(live)
    assert (4, 0, 0) == (used.acquired, used.replaced, used.recycled)
    assert set() == left


async def test_reconcile_closes_a_gone_managers_pooled_sessions_others_watch(
    fleet: Fleet,
) -> None:
    """
    The pooled sessions of a manager that is gone are adopted by a watch
    worker (by shard) and pinged; reconcile still closes them, because their
    owner's liveness lapsed. A live manager's pooled sessions stay.
    """
    async with fleet.manager(health=tether.HealthPolicy(enabled=False)) as maker:
        # As a crashed manager's pool left them: its owner holds no lease.
        gone = [
            await maker.create(
                "fake", labels={"tether.pool": "p", "tether.pool.owner": "gone"}
            )
            for _ in range(4)
        ]
    async with (
        fleet.manager(watch=True) as worker,
        fleet.manager(health=tether.HealthPolicy(enabled=False)) as live,
    ):
        pool = live.pool("fake", min_idle=2)
        await until(lambda: pool.snapshot().idle == 2)
        await until(lambda: all(s.id in worker._runtime.tracked for s in gone))
        report = await worker.reconcile()
        kept = fleet.backend.live_ids()
        closed = {a.session_id for a in report.actions if a.kind == "closed"}
        ids = set(pool.idle_ids())
    left = fleet.backend.live_ids()

    assert {s.id for s in gone} == closed
    assert 2 == len(kept)
    assert not ids & closed
    assert set() == left


async def test_the_managers_exit_closes_a_session_still_in_use(
    fleet: Fleet,
) -> None:
    """
    A pooled session still in use when its manager exits (a task holds it)
    is closed with the rest, even under on_exit="keep" and whoever watches it.
    """
    async with fleet.manager(watch=True):
        stack = contextlib.AsyncExitStack()
        owner = await stack.enter_async_context(fleet.manager(watch=True))
        pool = owner.pool("fake", min_idle=0, max_size=8)
        holders = [pool.acquire() for _ in range(6)]
        for holder in holders:
            await holder.__aenter__()
        live = fleet.backend.live_ids()
        # Some now sit in the other worker's shards.
        await anyio.sleep(1.5)
        await stack.aclose()  # the owner exits, its sessions still held
        for holder in holders:
            await holder.__aexit__(None, None, None)
        left = fleet.backend.live_ids()

    assert 6 == len(live)
    assert set() == left
