"""
Health: what a ping finds, and what it does to the session.

A ping that succeeds keeps (or brings back) the session ACTIVE and learns its
deadline; one that fails after retries makes it DEGRADED, and
``failures_before_lost`` failures in a row make it LOST (then a failover
policy may replace it); a service that says the session is gone makes it LOST
at once, and one that says it expired makes it EXPIRED.
"""

from __future__ import annotations

from typing import Any, Final

from tether import _retry
from tether._clock import to_datetime
from tether._events import EventKind
from tether._handle import SessionHandle
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.creation import Creator
from tether._lifecycle.deadlines import Deadlines
from tether._lifecycle.records import Records
from tether._lifecycle.runtime import Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import Slot, Slots
from tether._log import (
    EVENT_SESSION_DEGRADED,
    EVENT_SESSION_LOST,
    EVENT_SESSION_PINGED,
    EVENT_SESSION_RECOVERED,
    logger,
)
from tether._session import Health, HealthStatus, Session, SessionState, stamp_health
from tether.exceptions import ProviderError, RemoteNotFoundError, TransientProviderError


# Stands for a key that is not there (None may be a value).
_MISSING: Final = object()


class HealthMonitor:
    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        calls: Calls,
        records: Records,
        bus: EventBus,
        scheduler: Scheduler,
        deadlines: Deadlines,
        creator: Creator,
    ) -> None:
        self._runtime = runtime
        self._slots = slots
        self._calls = calls
        self._records = records
        self._bus = bus
        self._scheduler = scheduler
        self._deadlines = deadlines
        self._creator = creator

    async def ping(self, session: Session | SessionHandle[Any] | str) -> Health:
        """
        A ping on request: retried, and the next background ping moves back.
        """
        record = await self._records.current(session)
        record.ensure_usable()
        slot = self._slots.get(record.provider)
        health = await self._ping_once(slot, record, retry=True)
        self._scheduler.plan_ping(record.id, slot.ping_interval)
        return health

    async def background_ping(self, session_id: str) -> None:
        """
        The scheduled ping of a tracked session: one attempt, never raises a
        provider's error (it is logged), and plans the next.
        """
        runtime = self._runtime
        started = runtime.clock.time()
        tracked = runtime.tracked.get(session_id)
        if (
            runtime.cached_records
            and tracked is not None
            and tracked.record is not None
        ):
            # Kept current by the change feed: no read (the version check
            # catches a copy gone stale before the feed brought the news).
            record: Session | None = tracked.record
        else:
            record = await runtime.store.get(session_id)
        if (
            record is None
            or not record.state.is_live
            or session_id not in self._runtime.tracked
        ):
            return
        slot = self._slots.get(record.provider)
        if record.state is SessionState.CREATING:
            self._scheduler.plan_ping(session_id, slot.ping_interval)
            return
        try:
            await self._ping_once(slot, record, retry=False)
        except ProviderError as exc:
            logger.warning(
                "tether.session.ping_refused",
                provider=record.provider,
                session_id=session_id,
                error=type(exc).__name__,
            )
        tracked = self._runtime.tracked.get(session_id)
        if tracked is not None and tracked.state.is_live:
            self._scheduler.plan_ping(session_id, slot.ping_interval, since=started)

    async def _ping_once(self, slot: Slot, record: Session, *, retry: bool) -> Health:
        runtime = self._runtime
        started = runtime.clock.time()
        tracked = runtime.tracked.get(record.id)
        try:
            health = await self._calls.call(
                slot,
                lambda: slot.provider.ping(record),
                operation="ping",
                budget=None if retry else _retry.AttemptBudget(total=1),
                session_id=record.id,
            )
        except RemoteNotFoundError as exc:
            health = Health(
                status=HealthStatus.GONE, detail=str(exc), checked_at=runtime.now()
            )
        except TransientProviderError as exc:
            health = Health(
                status=HealthStatus.DEGRADED,
                detail=f"ping failed: {type(exc).__name__}: {exc}",
                checked_at=runtime.now(),
            )
            failures = (tracked.failures if tracked else 0) + 1
            if tracked is not None:
                tracked.failures = failures
                tracked.last_ok = health.ok
                tracked.last_ping_at = runtime.clock.time()
            if failures >= runtime.health.failures_before_lost:
                await self.mark_lost(
                    record.id, f"{failures} pings failed in a row: {exc}"
                )
            else:
                await self._mark_degraded(record.id, health)
            return health
        now = runtime.clock.time()
        health = stamp_health(
            health, latency=now - started, checked_at=to_datetime(now)
        )
        if tracked is not None:
            tracked.last_ok = ok = health.status is HealthStatus.ALIVE
            tracked.last_ping_at = now
            if ok:
                tracked.failures = 0
        await self._apply(record.id, health, known=record)
        return health

    async def _apply(
        self, session_id: str, health: Health, *, known: Session | None = None
    ) -> None:
        if health.status is HealthStatus.GONE:
            await self.mark_lost(
                session_id,
                health.detail or "the service no longer has it",
                raw_state=health.raw_state,
            )
            return
        if health.status is HealthStatus.EXPIRED:
            await self._deadlines.expire(session_id, already_gone=True)
            return
        if health.status is HealthStatus.DEGRADED:
            await self._mark_degraded(session_id, health)
            return

        seen: list[Session] = []

        def alive(current: Session) -> Session | None:
            seen.append(current)
            if not current.state.is_live or current.state is SessionState.CREATING:
                return None
            data = current.data
            if any(data.get(k, _MISSING) != v for k, v in health.data.items()):
                data = {**data, **health.data}
            raw_state = current.raw_state
            if health.raw_state is not None:
                raw_state = health.raw_state
            expires_at = current.expires_at
            if health.expires_at is not None:
                expires_at = health.expires_at
            if current.state is SessionState.DEGRADED:
                return current.transition(
                    SessionState.ACTIVE,
                    data=data,
                    raw_state=raw_state,
                    expires_at=expires_at,
                )
            if (
                data is current.data
                and raw_state == current.raw_state
                and expires_at == current.expires_at
            ):
                return None  # nothing new: no write (most pings)
            return current.evolve(data=data, raw_state=raw_state, expires_at=expires_at)

        after = await self._records.mutate(session_id, alive, known=known)
        before = seen[-1]
        if before.state is SessionState.DEGRADED and after.state is SessionState.ACTIVE:
            logger.info(
                EVENT_SESSION_RECOVERED, provider=after.provider, session_id=session_id
            )
            self._bus.emit(
                EventKind.RECOVERED,
                provider=after.provider,
                session=after,
                previous=SessionState.DEGRADED,
            )
        else:
            logger.debug(
                EVENT_SESSION_PINGED,
                provider=after.provider,
                session_id=session_id,
                status=health.status.value,
            )
            self._bus.emit(
                EventKind.PINGED,
                provider=after.provider,
                session=after,
                detail=health.status.value,
                data={"latency": health.latency},
            )
        if after.expires_at != before.expires_at:
            self._scheduler.plan_expiry(after)

    async def _mark_degraded(self, session_id: str, health: Health) -> None:
        def degrade(current: Session) -> Session | None:
            if current.state is not SessionState.ACTIVE:
                return None
            return current.transition(
                SessionState.DEGRADED, raw_state=health.raw_state, error=health.detail
            )

        before = await self._records.current(session_id)
        after = await self._records.mutate(session_id, degrade)
        if before.state is not after.state:
            logger.warning(
                EVENT_SESSION_DEGRADED,
                provider=after.provider,
                session_id=session_id,
                detail=health.detail,
            )
            self._bus.emit(
                EventKind.DEGRADED,
                provider=after.provider,
                session=after,
                previous=before.state,
                detail=health.detail,
            )

    async def mark_lost(
        self, session_id: str, reason: str, raw_state: str | None = None
    ) -> None:
        """
        The session is gone (or unreachable for too long): LOST, and replaced
        where its failover policy says so.
        """
        runtime = self._runtime

        def lose(current: Session) -> Session | None:
            if not current.state.is_live:
                return None
            return current.transition(
                SessionState.LOST, error=reason, raw_state=raw_state
            )

        before = await self._records.current(session_id)
        tracked = runtime.tracked.get(session_id)
        after = await self._records.mutate(session_id, lose)
        if before.state is after.state:
            return
        logger.warning(
            EVENT_SESSION_LOST,
            provider=after.provider,
            session_id=session_id,
            reason=reason,
        )
        if tracked is not None:
            # The service may hold it still (a partition, not a death): closed
            # on exit with the others, best effort.
            runtime.lost.add(session_id)
        self._bus.emit(
            EventKind.LOST,
            provider=after.provider,
            session=after,
            previous=before.state,
            detail=reason,
        )
        runtime.untrack(session_id)
        if (
            tracked is not None
            and tracked.failover is not None
            and tracked.failover.recreate_lost
        ):
            await self._creator.recreate(after, tracked)
