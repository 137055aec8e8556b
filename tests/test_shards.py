"""
Watch managers on Redis own sessions by shard: balanced shares, takeover of a
stopped worker's shards, no duplicate pings, and steady pings that cost Redis
(almost) nothing. On both anyio backends (trio through redis-py's sync client).

Workers here are managers in this process, on real time: Redis expires
memberships by its own clock. Liveness waits have generous deadlines; what is
asserted is safety (one pinger at a time, fencing) and shares.
"""

from __future__ import annotations

import builtins
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, ClassVar

import anyio
import attrs
import pytest

import tether
from tether._session import Health, Session
from tether.exceptions import LeaseLostError
from tether.stores import RedisStore
from tether.testing import FakeBackend, FakeProvider


pytest.importorskip("redis")

S = tether.SessionState
INTERVAL = 0.5
TTL = 2.0


@attrs.define
class Pings:
    """
    Every background ping: (worker, session id, time), in order.
    """

    seen: list[tuple[str, str, float]] = attrs.Factory(list)
    _news: anyio.Event | None = None

    def add(self, worker: str, session_id: str) -> None:
        """
        Record one ping, and wake whoever waits for pings.
        """
        self.seen.append((worker, session_id, anyio.current_time()))
        if self._news is not None:
            self._news.set()
            self._news = None

    async def until(self, predicate: Callable[[], bool]) -> None:
        """
        Return once *predicate* holds (checked after each ping).
        """
        while not predicate():
            if self._news is None:
                self._news = anyio.Event()
            await self._news.wait()

    def by_session(self) -> dict[str, list[tuple[float, str]]]:
        out: dict[str, list[tuple[float, str]]] = {}
        for worker, sid, at in self.seen:
            out.setdefault(sid, []).append((at, worker))
        return out


class Counted(FakeProvider):
    """
    A fake provider that records which worker pinged which session, and when.
    """

    log: ClassVar[Pings] = Pings()
    worker: str = ""

    async def ping(self, session: Session) -> Health:
        self.log.add(self.worker, session.id)
        return await super().ping(session)


@attrs.define
class Watched(RedisStore):
    """
    A RedisStore that remembers what Shards read through it: the ids each
    changes() call returned, and the shards each shard_sessions() call read.
    """

    fed: builtins.list[str] = attrs.field(factory=builtins.list, init=False)
    loads: builtins.list[tuple[int, ...]] = attrs.field(
        factory=builtins.list, init=False
    )
    loaded: builtins.list[str] = attrs.field(factory=builtins.list, init=False)

    async def shard_sessions(self, *shards: int) -> builtins.list[Session]:
        self.loads.append(shards)
        records = await super().shard_sessions(*shards)
        self.loaded.extend(r.id for r in records)
        return records

    async def changes(
        self, cursor: int | None, *, shards: Iterable[int] | None = None
    ) -> tuple[int, builtins.list[Session]]:
        cursor, records = await super().changes(cursor, shards=shards)
        self.fed.extend(r.id for r in records)
        return cursor, records


@attrs.define
class Fleet:
    """
    Watch managers sharing one Redis namespace and one fake service.
    """

    url: str
    namespace: str
    backend: FakeBackend
    pings: Pings
    shards: int = 16

    def registry(self, worker: str) -> tether.ProviderRegistry:
        cls = type(
            "Counted_" + worker, (Counted,), {"worker": worker, "log": self.pings}
        )
        registry = tether.ProviderRegistry(entry_points=False)
        registry.register("fake", cls)
        return registry

    def store(self) -> RedisStore:
        return RedisStore(self.url, namespace=self.namespace, shards=self.shards)

    def watched(self) -> Watched:
        return Watched(self.url, namespace=self.namespace, shards=self.shards)

    def manager(
        self, worker: str, store: RedisStore, **kw: Any
    ) -> tether.SessionManager:
        kw.setdefault("health", tether.HealthPolicy(interval=INTERVAL, lease_ttl=TTL))
        return tether.SessionManager(
            registry=self.registry(worker),
            store=store,
            config={"fake": {"backend": self.backend}},
            environ={},
            on_exit="keep",
            **kw,
        )

    @contextlib.asynccontextmanager
    async def worker(
        self, name: str, *, store: RedisStore | None = None, **kw: Any
    ) -> AsyncIterator[tether.SessionManager]:
        store = store or self.store()
        try:
            async with self.manager(name, store, watch=True, **kw) as manager:
                yield manager
        finally:
            await store.aclose()

    async def create(self, count: int) -> list[str]:
        store = self.store()
        async with self.manager(
            "maker", store, health=tether.HealthPolicy(enabled=False)
        ) as maker:
            made = [(await maker.create("fake")).id for _ in range(count)]
        await store.aclose()
        return made

    async def redis(self, fn: Callable[[Any], Any]) -> Any:
        """
        fn(a sync redis-py client), in a worker thread (on either backend).
        """
        import redis  # noqa: PLC0415

        def call() -> Any:
            client = redis.Redis.from_url(self.url, decode_responses=True)
            try:
                return fn(client)
            finally:
                client.close()

        return await anyio.to_thread.run_sync(call)

    async def owners(self) -> dict[str, int]:
        """
        Shards per live member (members whose membership has not lapsed).
        """

        def read(client: Any) -> dict[str, int]:
            now_s, now_us = client.time()
            now = now_s * 1000 + now_us // 1000
            live = {
                m
                for m, until in client.zrange(
                    f"{self.namespace}:members", 0, -1, withscores=True
                )
                if until > now
            }
            counts = dict.fromkeys(live, 0)
            for value in client.hgetall(f"{self.namespace}:shards").values():
                owner = value.rpartition("|")[0]
                if owner in counts:
                    counts[owner] += 1
            return counts

        return dict(await self.redis(read))

    async def settled(self, members: int) -> None:
        """
        Wait until *members* live workers hold exactly their shares (the
        shard count divides evenly): no shard moves any more.
        """
        share = self.shards // members
        while True:
            if [share] * members == list((await self.owners()).values()):
                return
            await anyio.sleep(0.05)

    async def held(self) -> dict[str, set[int]]:
        """
        The shards each owner holds (by the shards hash).
        """

        def read(client: Any) -> dict[str, set[int]]:
            out: dict[str, set[int]] = {}
            for k, value in client.hgetall(f"{self.namespace}:shards").items():
                out.setdefault(value.rpartition("|")[0], set()).add(int(k))
            return out

        return dict(await self.redis(read))

    async def balanced(self, members: int) -> dict[str, int]:
        """
        Wait until *members* live workers hold every shard, evenly.
        """
        while True:
            counts = await self.owners()
            values = list(counts.values())
            if (
                len(values) == members
                and sum(values) == self.shards
                and min(values) > 0
                and max(values) / min(values) <= 1.5
            ):
                return counts
            await anyio.sleep(0.05)


@pytest.fixture(name="fleet")
def _fleet(redis_url: str) -> Fleet:
    return Fleet(
        url=redis_url,
        namespace=f"t{uuid.uuid4().hex}",
        backend=FakeBackend(),
        pings=Pings(),
    )


def pingers(
    pings: Pings, sessions: list[str], since: float = 0.0
) -> dict[str, set[str]]:
    """
    Who pinged each session (after *since*).
    """
    by = pings.by_session()
    return {sid: {w for at, w in by.get(sid, []) if at > since} for sid in sessions}


async def test_shares_stay_even_as_workers_join_and_leave(fleet: Fleet) -> None:
    """
    Three workers share the shards evenly (largest / smallest <= 1.5); a
    fourth joins and gets its share; one leaves and the rest take its shards.
    Every session is pinged, and only by its shard's owner.
    """
    sessions = await fleet.create(60)
    async with contextlib.AsyncExitStack() as stack:
        for name in ("a", "b", "c"):
            await stack.enter_async_context(fleet.worker(name))
        with anyio.fail_after(30):
            three = await fleet.balanced(3)
        async with fleet.worker("d"):
            with anyio.fail_after(30):
                four = await fleet.balanced(4)
        with anyio.fail_after(30):
            after = await fleet.balanced(3)
            await fleet.pings.until(
                lambda: all(pingers(fleet.pings, sessions).values())
            )

    assert 3 == len(three)
    assert 4 == len(four)
    assert 3 == len(after)
    assert 16 == sum(after.values())


async def test_a_worker_reads_only_its_own_shards_changes(fleet: Fleet) -> None:
    """
    Two settled workers; sessions made afterwards reach each worker through
    its change feed. What the feed returns to a worker (counted as the store
    returns it) is the records of its own shards, all of them, and none of
    the other worker's. (Should a shard move anyway, a stalled worker's
    membership lapsing, its records reach the gainer by its load: the
    assertions allow for that, and nothing else.)
    """
    health = tether.HealthPolicy(interval=INTERVAL, lease_ttl=10)
    stores = {"a": fleet.watched(), "b": fleet.watched()}
    async with (
        fleet.worker("a", store=stores["a"], health=health) as a,
        fleet.worker("b", store=stores["b"], health=health) as b,
    ):
        with anyio.fail_after(30):
            await fleet.settled(2)
        owners = {"a": a._runtime.owner, "b": b._runtime.owner}
        at_start = await fleet.held()
        for store in stores.values():
            store.loads.clear()
        sessions = await fleet.create(40)
        with anyio.fail_after(30):
            await fleet.pings.until(
                lambda: all(pingers(fleet.pings, sessions).values())
            )
        at_end = await fleet.held()

    assert set(range(fleet.shards)) == at_end[owners["a"]] | at_end[owners["b"]]
    for name, store in stores.items():
        mine = {sid for sid in sessions if store.shard_of(sid) in at_end[owners[name]]}
        ever = at_start[owners[name]] | {k for ks in store.loads for k in ks}
        theirs = {sid for sid in sessions if store.shard_of(sid) not in ever}
        assert mine
        assert theirs
        # Nothing of the other's shards; all of its own, by feed (or load).
        assert not set(store.fed) & theirs
        assert mine <= set(store.fed) | set(store.loaded)


async def test_a_worker_reads_the_shards_it_gains_in_one_call(fleet: Fleet) -> None:
    """
    A lone worker gains every shard at its first heartbeat and reads their
    records in one store call, then pings every session.
    """
    sessions = await fleet.create(40)
    store = fleet.watched()
    async with fleet.worker("a", store=store):
        with anyio.fail_after(30):
            await fleet.balanced(1)
            await fleet.pings.until(
                lambda: all(pingers(fleet.pings, sessions).values())
            )

    assert [tuple(range(fleet.shards))] == store.loads


async def test_takeover_after_an_abrupt_stop_within_ttl_and_an_interval(
    fleet: Fleet,
) -> None:
    """
    A worker that stops without leaving (its Redis connection gone) keeps its
    shards until its membership lapses; then the survivor pings its sessions,
    within the TTL plus one interval (generous margin). No session is pinged
    by two workers at once: the survivor's first ping comes after the
    victim's last.
    """
    sessions = await fleet.create(40)
    victim_store = fleet.store()
    async with fleet.worker("survivor"):
        async with anyio.create_task_group() as tg:
            stopped = anyio.Event()

            async def victim() -> None:
                async with fleet.worker("victim", store=victim_store):
                    await stopped.wait()

            tg.start_soon(victim)
            with anyio.fail_after(30):
                await fleet.balanced(2)
                balanced = anyio.current_time()
                await fleet.pings.until(
                    lambda: all(pingers(fleet.pings, sessions, balanced).values())
                )
            # Abrupt: the victim can neither heartbeat nor leave.
            await victim_store.aclose()
            stopped.set()
        stop = anyio.current_time()
        victims = {
            sid
            for sid, ws in pingers(fleet.pings, sessions, balanced).items()
            if "victim" in ws
        }
        with anyio.fail_after(30):
            await fleet.pings.until(
                lambda: all(
                    "survivor" in ws
                    for sid, ws in pingers(fleet.pings, sessions, stop).items()
                    if sid in victims
                )
            )

    by = fleet.pings.by_session()
    assert victims
    takeovers = []
    for sid in victims:
        first_victim = min(at for at, w in by[sid] if w == "victim")
        last_victim = max(at for at, w in by[sid] if w == "victim")
        # One pinger at a time: while the victim held the session, the
        # survivor never pinged it.
        assert not [
            at
            for at, w in by[sid]
            if w == "survivor" and first_victim < at < last_victim
        ]
        takeovers.append(
            min(at for at, w in by[sid] if w == "survivor" and at > stop) - stop
        )
    # Liveness, with a generous margin for a loaded machine.
    assert max(takeovers) <= TTL + INTERVAL + 10


async def test_a_stale_owner_write_is_fenced_off(fleet: Fleet) -> None:
    """
    Once a shard changed hands, a write under the old owner's token is
    refused with LeaseLostError; the new owner's lands.
    """
    async with fleet.store() as store:
        await store.insert(Session(id="s1", provider="fake", state=S.ACTIVE))
        shard = store.shard_of("s1")
        old = (await store.heartbeat("old", 0.2))[shard]
        await anyio.sleep(0.4)  # its membership lapses
        new = (await store.heartbeat("new", 5))[shard]
        record = await store.get("s1")
        assert record is not None

        with pytest.raises(LeaseLostError) as info:
            await store.update(record.evolve(data={"by": "old"}), fence=old)
        stored = await store.update(record.evolve(data={"by": "new"}), fence=new)

    assert (old, new) == (info.value.expected, info.value.actual)
    assert new > old
    assert {"by": "new"} == dict(stored.data)


async def test_steady_pings_cost_at_most_half_a_redis_command(fleet: Fleet) -> None:
    """
    Counted by Redis itself (INFO commandstats, scripts' inner commands
    included): two watch workers pinging 200 sessions every second spend at
    most 0.5 Redis commands per ping once every session has been taken (about
    0.16 when every ping is on time: two heartbeats a second each).
    """
    fleet.shards = 8
    sessions = await fleet.create(200)

    def calls(client: Any) -> int:
        stats = client.info("commandstats")
        return sum(
            v["calls"]
            for k, v in stats.items()
            if k not in {"cmdstat_info", "cmdstat_config|resetstat"}
        )

    health = tether.HealthPolicy(interval=1.0, lease_ttl=TTL)
    async with fleet.worker("a", health=health), fleet.worker("b", health=health):
        with anyio.fail_after(30):
            await fleet.balanced(2)
            await fleet.pings.until(
                lambda: all(pingers(fleet.pings, sessions).values())
            )
        await fleet.redis(lambda c: c.config_resetstat())
        before = len(fleet.pings.seen)
        await anyio.sleep(2)
        pinged = len(fleet.pings.seen) - before
        spent = await fleet.redis(calls)

    assert pinged > 0
    assert spent / pinged <= 0.5
