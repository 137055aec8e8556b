"""
Background jobs as the scheduler hands them out: each session job runs under
its lease (fenced writes, so a worker whose lease lapsed cannot act), the
watch sweep adopts sessions whose lease is free, and pruning deletes the
records of sessions that ended long ago.

On a store that shards (Redis), a watch manager's lease is its shards' (see
shards.py): the sweep is a heartbeat, and a job claims nothing.
"""

from __future__ import annotations

import anyio

from tether._lifecycle.deadlines import Deadlines
from tether._lifecycle.health import HealthMonitor
from tether._lifecycle.records import fenced
from tether._lifecycle.runtime import PRUNABLE, WATCHED, ManagerStateError, Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.shards import Shards
from tether._lifecycle.slots import Slots
from tether._log import EVENT_STORE_PRUNED, logger
from tether.exceptions import LeaseLostError, StoreError, StoreUnavailableError


# Seconds before a job the store could not serve is tried again (at most).
_STORE_RETRY = 5.0


class Jobs:
    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        scheduler: Scheduler,
        health: HealthMonitor,
        deadlines: Deadlines,
    ) -> None:
        self._runtime = runtime
        self._slots = slots
        self._scheduler = scheduler
        self._health = health
        self._deadlines = deadlines
        self._shards = Shards(runtime=runtime, slots=slots, scheduler=scheduler)

    def start(self) -> None:
        """
        Put the manager-wide jobs on the schedule (the manager just opened).
        """
        runtime = self._runtime
        if self._shards.start():
            # Its own task, not a job: a backlog of due pings must not delay
            # the heartbeat past the membership's TTL.
            assert runtime.tg is not None  # noqa: S101
            runtime.tg.start_soon(self._heartbeats)
        elif runtime.watch:
            self._scheduler.schedule("sweep", "*", runtime.clock.time())
        if runtime.retain_ended is not None:
            self._scheduler.schedule(
                "prune", "*", runtime.clock.time() + self._prune_interval()
            )

    async def run(self, kind: str, session_id: str) -> None:
        """
        Run one due job. Background work reports through events and logs,
        never by raising: the manager must not crash.
        """
        runtime = self._runtime
        try:
            if kind == "sweep":
                await self._sweep()
                return
            if kind == "prune":
                await self._prune()
                return
            tracked = runtime.tracked.get(session_id)
            if tracked is None:
                return
            # Only the lease holder works on a session; its writes carry the
            # fencing token, so a worker whose lease lapsed cannot act on it.
            if self._shards.active:
                token = self._shards.token(session_id)
                if token is None and self._shards.unsure(session_id):
                    # The heartbeat is late: wait for it rather than drop a
                    # session whose shard is most likely still ours.
                    self._scheduler.schedule(
                        kind,
                        session_id,
                        runtime.clock.time() + self._shards.tick_interval(),
                    )
                    return
            else:
                token = await runtime.store.claim(
                    session_id, runtime.owner, self.lease_ttl(tracked.provider)
                )
            if token is None:
                runtime.untrack(session_id)
                return
            with fenced(token):
                if kind == "ping":
                    await self._health.background_ping(session_id)
                elif kind == "expire":
                    await self._deadlines.expire(session_id)
                else:
                    await self._deadlines.keepalive(session_id)
        except StoreUnavailableError as exc:
            # The store is down for now: a session still tracked keeps its
            # job, tried again soon, rather than falling out of watch.
            logger.warning(
                "tether.background.store_unavailable",
                job=kind,
                session_id=session_id,
                detail=str(exc),
            )
            if session_id in runtime.tracked:
                retry_in = min(
                    self._slots.ping_interval(runtime.tracked[session_id].provider),
                    _STORE_RETRY,
                )
                self._scheduler.schedule(
                    kind, session_id, runtime.clock.time() + retry_in
                )
        except LeaseLostError:
            logger.warning(
                "tether.lease.lost", session_id=session_id, owner=runtime.owner
            )
            runtime.untrack(session_id)
        except ManagerStateError:
            return  # the manager is shutting down
        except Exception as exc:  # noqa: BLE001
            # A store's own errors included.
            logger.warning(
                "tether.background.failed",
                job=kind,
                session_id=session_id,
                error=type(exc).__name__,
                detail=str(exc),
            )

    def lease_ttl(self, provider: str) -> float:
        if self._runtime.health.lease_ttl is not None:
            return self._runtime.health.lease_ttl
        return max(3 * self._slots.ping_interval(provider), 10.0)

    async def aclose(self) -> None:
        """
        Give up this manager's shards, if it holds any (it is closing).
        """
        with anyio.move_on_after(self._runtime.shield_timeout, shield=True):
            try:
                await self._shards.leave()
            except StoreError as exc:
                # Its shards lapse with its membership instead.
                logger.warning(
                    "tether.shard.leave_failed",
                    owner=self._runtime.owner,
                    detail=str(exc),
                )

    async def _heartbeats(self) -> None:
        # Heartbeat and rebalance the shards, every tick, as long as we run.
        while True:
            await self.run("sweep", "*")
            await self._runtime.clock.sleep(self._shards.tick_interval())

    async def _sweep(self) -> None:
        """
        Adopt live sessions in the store whose lease is free (watch mode).
        """
        runtime = self._runtime
        if self._shards.active:
            await self._shards.tick()
            return
        try:
            known = set(self._slots.registry.names())
            for record in await runtime.store.list(states=list(WATCHED)):
                if record.id in runtime.tracked or record.provider not in known:
                    continue
                self._slots.get(record.provider)
                token = await runtime.store.claim(
                    record.id, runtime.owner, self.lease_ttl(record.provider)
                )
                if token is not None:
                    logger.info(
                        "tether.lease.acquired",
                        session_id=record.id,
                        owner=runtime.owner,
                    )
                    self._scheduler.track(record)
        finally:
            if runtime.watch:
                self._scheduler.schedule(
                    "sweep", "*", runtime.clock.time() + self._sweep_interval()
                )

    def _sweep_interval(self) -> float:
        if self._runtime.health.lease_ttl is not None:
            return self._runtime.health.lease_ttl / 2
        intervals = [slot.ping_interval for slot in self._slots] or [30.0]
        return max(min(intervals), 1.0)

    def _prune_interval(self) -> float:
        assert self._runtime.retain_ended is not None  # noqa: S101
        return min(max(self._runtime.retain_ended / 2, 1.0), 300.0)

    async def _prune(self) -> None:
        """
        Delete the records of sessions that ended over ``retain_ended`` ago.
        """
        runtime = self._runtime
        assert runtime.retain_ended is not None  # noqa: S101
        try:
            cutoff = runtime.clock.time() - runtime.retain_ended
            pruned = 0
            for record in await runtime.store.list(states=list(PRUNABLE)):
                if (
                    record.updated_at.timestamp() <= cutoff
                    and record.id not in runtime.tracked
                ):
                    await runtime.store.delete(record.id)
                    pruned += 1
            if pruned:
                logger.debug(EVENT_STORE_PRUNED, sessions=pruned)
        finally:
            self._scheduler.schedule(
                "prune", "*", runtime.clock.time() + self._prune_interval()
            )
