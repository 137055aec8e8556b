"""
Ownership by shard, for watch managers on a store that shards (Redis).

Session ids hash into a fixed number of shards. Each watch worker renews its
membership and rebalances its shards in one store call per tick (the store
gives every live worker an even share, and a dead worker's shards to the
others once its membership lapses), reads the records of the shards it gained
(all in one store call), then reads the change feeds of the shards it holds:
the records written there since its last tick. A background job of a session
in a shard the worker holds runs under the shard's fencing token, with no
store call of its own, and a ping reads the worker's copy of the record, which
the feed keeps current: a steady ping costs the store nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from tether._lifecycle.runtime import WATCHED, Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import Slots
from tether._log import logger
from tether._session import Session


#: Seconds between ticks at most, and at least.
_TICK_MAX = 30.0
_TICK_MIN = 0.05


@runtime_checkable
class ShardedStore(Protocol):
    """
    What a store offers for ownership by shard (see RedisStore).
    """

    async def shard_count(self) -> int: ...

    def shard_of(self, session_id: str) -> int: ...

    async def heartbeat(
        self, owner: str, ttl: float, *, leave: bool = False
    ) -> dict[int, int]: ...

    async def shard_sessions(self, *shards: int) -> list[Session]: ...

    async def changes(
        self, cursor: int | None, *, shards: Iterable[int] | None = None
    ) -> tuple[int, list[Session]]: ...


class Shards:
    """
    The shards one watch manager holds, and the sessions in them it watches.
    """

    def __init__(self, *, runtime: Runtime, slots: Slots, scheduler: Scheduler) -> None:
        self._runtime = runtime
        self._slots = slots
        self._scheduler = scheduler
        self._store: ShardedStore | None = None
        # shard -> its fencing token, valid until _valid_until (our clock).
        self._owned: dict[int, int] = {}
        self._valid_until = 0.0
        # The shards whose sessions this manager has adopted, with the token
        # it adopted them under.
        self._loaded: dict[int, int] = {}
        self._cursor: int | None = None
        self._random = random.Random()  # noqa: S311 -- spreading, not security

    def start(self) -> bool:
        """
        Whether background work goes by shard (watch mode on a sharded store).
        """
        store = self._runtime.store
        if self._runtime.watch and isinstance(store, ShardedStore):
            self._store = store
            # The change feed keeps each tracked session's record current.
            self._runtime.cached_records = True
        return self._store is not None

    @property
    def active(self) -> bool:
        return self._store is not None

    def ttl(self) -> float:
        """
        Seconds a membership (and so its shards) lasts without a heartbeat.
        """
        if self._runtime.health.lease_ttl is not None:
            return self._runtime.health.lease_ttl
        return max(3 * self._min_interval(), 10.0)

    def tick_interval(self) -> float:
        """
        Seconds between heartbeats: a third of the TTL, and at most half a
        ping interval, so a dead worker's sessions are pinged again within
        the TTL plus one interval.
        """
        tick = min(self.ttl() / 3, self._min_interval() / 2, _TICK_MAX)
        return max(tick, _TICK_MIN)

    def _min_interval(self) -> float:
        # Before any provider is loaded: the policy's interval, if it sets one.
        default = self._runtime.health.interval or 30.0
        return min((slot.ping_interval for slot in self._slots), default=default)

    def token(self, session_id: str) -> int | None:
        """
        The fencing token a job of *session_id* runs under, or ``None`` when
        this manager does not hold its shard (or cannot be sure it still does).
        """
        assert self._store is not None  # noqa: S101
        if self._runtime.clock.time() >= self._valid_until:
            return None
        return self._owned.get(self._store.shard_of(session_id))

    def unsure(self, session_id: str) -> bool:
        """
        Whether this manager held *session_id*'s shard at its last heartbeat,
        but that heartbeat is now too old to be sure it still does.
        """
        assert self._store is not None  # noqa: S101
        return (
            self._runtime.clock.time() >= self._valid_until
            and self._store.shard_of(session_id) in self._owned
        )

    async def tick(self) -> None:
        """
        Heartbeat and rebalance; drop the shards given up, load the ones
        gained; then apply the change feed.
        """
        store = self._store
        assert store is not None  # noqa: S101
        runtime = self._runtime
        if self._cursor is None:
            await store.shard_count()
            # Writes from here on show in the feed; earlier ones in the shards.
            self._cursor, _ = await store.changes(None)
        ttl = self.ttl()
        started = runtime.clock.time()
        owned = await store.heartbeat(runtime.owner, ttl)
        self._owned = owned
        self._valid_until = started + ttl
        loaded = self._loaded
        lost = {k for k, token in loaded.items() if owned.get(k) != token}
        for k in lost:
            del loaded[k]
        if lost - set(owned):
            self._drop(lost - set(owned))
        # The shards gained, read in one call. A shard counts as loaded only
        # once its sessions are: a tick that fails here loads them next time.
        gained = sorted(k for k in owned if k not in loaded)
        if gained:
            adopted = dict.fromkeys(gained, 0)
            for record in await store.shard_sessions(*gained):
                if self._adopt(record, soon=True):
                    adopted[store.shard_of(record.id)] += 1
            for shard in gained:
                loaded[shard] = owned[shard]
                logger.info(
                    "tether.shard.acquired",
                    shard=shard,
                    token=owned[shard],
                    owner=runtime.owner,
                    sessions=adopted[shard],
                )
        # Only the feeds of the shards held: the writes to others' shards
        # are theirs to read. The cursor is one sequence across the shards,
        # so a shard gained later is read from here on (what it held before
        # was loaded above).
        mine = sorted(owned)
        while True:
            self._cursor, records = await store.changes(self._cursor, shards=mine)
            for record in records:
                self._changed(record)
            if not records:
                break

    async def leave(self) -> None:
        """
        Give up every shard and the membership: the others take over at once.
        """
        if self._store is None or self._cursor is None:
            return
        self._owned = {}
        self._loaded = {}
        self._valid_until = 0.0
        await self._store.heartbeat(self._runtime.owner, self.ttl(), leave=True)

    def _drop(self, shards: set[int]) -> None:
        assert self._store is not None  # noqa: S101
        runtime = self._runtime
        for session_id in list(runtime.tracked):
            if self._store.shard_of(session_id) in shards:
                runtime.untrack(session_id)
        for shard in sorted(shards):
            logger.info("tether.shard.released", shard=shard, owner=runtime.owner)

    def _adopt(self, record: Session, *, soon: bool) -> bool:
        runtime = self._runtime
        if (
            record.state not in WATCHED
            or record.id in runtime.tracked
            or record.provider not in self._slots.registry.names()
        ):
            return False
        slot = self._slots.get(record.provider)
        self._scheduler.track(record)
        runtime.tracked[record.id].record = record
        if soon and runtime.health.enabled:
            # Taken over: pinged within the next tick, spread over it.
            spread = min(slot.ping_interval, self.tick_interval())
            self._scheduler.schedule(
                "ping",
                record.id,
                runtime.clock.time() + self._random.uniform(0, spread),
            )
        return True

    def _changed(self, record: Session) -> None:
        # A record written since the last tick, by anyone (us included).
        assert self._store is not None  # noqa: S101
        if self._store.shard_of(record.id) not in self._owned:
            return
        runtime = self._runtime
        tracked = runtime.tracked.get(record.id)
        if tracked is None:
            self._adopt(record, soon=False)
            return
        known = tracked.record
        if known is not None and record.version <= known.version:
            return  # our own write: the copy is current
        tracked.record = record
        tracked.state = record.state
        if record.state.is_terminal:
            runtime.untrack(record.id)
        elif known is None or record.expires_at != known.expires_at:
            tracked.expires_at = (
                record.expires_at.timestamp() if record.expires_at else None
            )
            self._scheduler.plan_expiry(record)
