"""
Deadlines: renewing a session's lifetime, keeping it alive before its
deadline (keepalive), and ending it when the deadline comes (expiry).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tether._events import EventKind
from tether._handle import SessionHandle
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.records import Records
from tether._lifecycle.runtime import Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import Slots
from tether._log import (
    EVENT_SESSION_CLOSE_FAILED,
    EVENT_SESSION_EXPIRED,
    EVENT_SESSION_RENEWED,
    logger,
)
from tether._session import Session, SessionState
from tether.exceptions import (
    InvalidParameterError,
    NotSupportedError,
    RemoteNotFoundError,
    SessionEndedError,
    TetherError,
)


# A close at expiry that failed, on a service that will not end the session by
# itself, is tried again this many seconds later.
_EXPIRE_RETRY = 5.0


class Deadlines:
    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        calls: Calls,
        records: Records,
        bus: EventBus,
        scheduler: Scheduler,
    ) -> None:
        self._runtime = runtime
        self._slots = slots
        self._calls = calls
        self._records = records
        self._bus = bus
        self._scheduler = scheduler

    async def renew(
        self, session: Session | SessionHandle[Any] | str, lifetime: float | None
    ) -> Session:
        """
        What :meth:`SessionManager.renew` does.
        """
        runtime = self._runtime
        record = await self._records.current(session)
        record.ensure_usable()
        slot = self._slots.get(record.provider)
        caps = slot.provider.capabilities
        seconds = lifetime if lifetime is not None else record.lifetime
        if seconds is None or seconds <= 0:
            msg = "renew needs a positive lifetime (the session has none of its own)"
            raise InvalidParameterError(msg, field="lifetime", value=lifetime)
        if caps.renew:
            remote = await self._calls.call(
                slot,
                lambda: slot.provider.renew(record, seconds),
                operation="renew",
                session_id=record.id,
            )
            new_deadline = remote.expires_at or runtime.now() + timedelta(
                seconds=seconds
            )
        elif not caps.server_ttl:
            new_deadline = runtime.now() + timedelta(seconds=seconds)
        else:
            raise slot.provider.not_supported("renew")

        def extend(current: Session) -> Session | None:
            current.ensure_usable()
            deadline = new_deadline
            if current.expires_at is not None and current.expires_at > deadline:
                deadline = current.expires_at
            return current.evolve(expires_at=deadline)

        renewed = await self._records.mutate(record.id, extend)
        logger.info(
            EVENT_SESSION_RENEWED,
            provider=record.provider,
            session_id=record.id,
            expires_at=renewed.expires_at.isoformat() if renewed.expires_at else None,
        )
        self._bus.emit(EventKind.RENEWED, provider=record.provider, session=renewed)
        self._scheduler.plan(renewed)
        return renewed

    async def keepalive(self, session_id: str) -> None:
        """
        Renew before the deadline, backing off on failures until it passes.
        """
        clock = self._runtime.clock
        record = await self._runtime.store.get(session_id)
        if record is None or not record.state.is_live or record.expires_at is None:
            return
        hard_deadline = record.expires_at.timestamp()
        delay = 0.5
        while clock.time() < hard_deadline:
            try:
                with self._bus.operation(
                    "renew", provider=record.provider, session_id=session_id
                ):
                    await self.renew(session_id, None)
            except (SessionEndedError, NotSupportedError):
                return
            except TetherError as exc:
                logger.warning(
                    "tether.session.renew_failed",
                    session_id=session_id,
                    error=type(exc).__name__,
                )
                left = hard_deadline - clock.time()
                await clock.sleep(max(0.0, min(delay, left / 2)))
                delay = min(delay * 2, 30.0)
                continue
            return

    async def expire(self, session_id: str, *, already_gone: bool = False) -> None:
        """
        The deadline came: close the session (unless the service ended it
        already) and record it EXPIRED.
        """
        runtime = self._runtime
        record = await runtime.store.get(session_id)
        if record is None:
            return
        # CLOSING: an expiry whose close failed, tried again.
        retrying = record.state is SessionState.CLOSING and not already_gone
        if not (record.state.is_live or retrying):
            return
        if not already_gone and not retrying:
            if (
                record.expires_at is None
                or record.expires_at.timestamp() > runtime.clock.time()
            ):
                # The deadline moved (renewed) since this was scheduled.
                self._scheduler.plan_expiry(record)
                return
        slot = self._slots.get(record.provider)
        previous = record.state
        if not already_gone:
            closing = record
            if not retrying:
                closing = await self._records.mutate(
                    session_id,
                    lambda s: (
                        s.transition(SessionState.CLOSING, raw_state=s.raw_state)
                        if s.state.is_live
                        else None
                    ),
                )
            if closing.state is not SessionState.CLOSING:
                return
            error: str | None = None
            try:
                with runtime.shielded() as scope:
                    await self._calls.call(
                        slot,
                        lambda: slot.provider.close(closing),
                        operation="close",
                        session_id=session_id,
                    )
                if scope.cancelled_caught:
                    # Out of time, unanswered: as much a failure as a refusal.
                    error = "ProviderUnavailableError"
            except RemoteNotFoundError:
                pass
            except TetherError as exc:
                error = type(exc).__name__
            if error is not None:
                logger.warning(
                    EVENT_SESSION_CLOSE_FAILED,
                    provider=record.provider,
                    session_id=session_id,
                    remote_id=record.remote_id,
                    error=error,
                )
                if not slot.provider.capabilities.server_ttl:
                    # It may still run and bill: keep it CLOSING, try again soon.
                    self._scheduler.schedule(
                        "expire", session_id, runtime.clock.time() + _EXPIRE_RETRY
                    )
                    return
        expired = await self._records.mutate(
            session_id,
            lambda s: (
                s.transition(SessionState.EXPIRED)
                if s.state
                in (SessionState.CLOSING, SessionState.ACTIVE, SessionState.DEGRADED)
                else None
            ),
        )
        if expired.state is SessionState.EXPIRED:
            logger.info(
                EVENT_SESSION_EXPIRED, provider=expired.provider, session_id=session_id
            )
            self._bus.emit(
                EventKind.EXPIRED,
                provider=expired.provider,
                session=expired,
                previous=previous,
            )
