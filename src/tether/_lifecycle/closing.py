"""
Closing sessions: on request (idempotent, finding a session whose create
answer was lost), LOST ones on exit, and every tracked one on exit.
"""

from __future__ import annotations

import contextlib
import functools

import anyio

from tether import _retry
from tether._events import EventKind
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.locate import Locator
from tether._lifecycle.records import Records
from tether._lifecycle.runtime import ENDED, Runtime
from tether._lifecycle.slots import Slots
from tether._log import (
    EVENT_SESSION_CLOSE_FAILED,
    EVENT_SESSION_CLOSED,
    EVENT_SESSION_CLOSING,
    logger,
)
from tether._session import Session, SessionState
from tether.exceptions import RemoteNotFoundError, TetherError


_CLOSABLE = (
    SessionState.CREATING,
    SessionState.ACTIVE,
    SessionState.DEGRADED,
    SessionState.LOST,
)


class Closer:
    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        calls: Calls,
        records: Records,
        bus: EventBus,
        locator: Locator,
    ) -> None:
        self._runtime = runtime
        self._slots = slots
        self._calls = calls
        self._records = records
        self._bus = bus
        self._locator = locator

    async def close(self, session_id: str, record: Session | None = None) -> Session:
        """
        Close the session on its service and record it CLOSED.

        Idempotent: an ended record is returned as it is. A failed close leaves
        the record CLOSING and raises.
        """
        runtime = self._runtime
        if record is None:
            record = await self._records.current(session_id)
        if record.state in ENDED:
            runtime.untrack(session_id)
            return record
        slot = self._slots.get(record.provider)
        previous = record.state
        closing = await self._records.mutate(
            session_id,
            lambda s: (
                s.transition(SessionState.CLOSING) if s.state in _CLOSABLE else None
            ),
            known=record,
        )
        if closing.state is not SessionState.CLOSING:
            return closing
        log = logger.bind(provider=record.provider, session_id=session_id)
        log.debug(EVENT_SESSION_CLOSING)
        target = closing
        if target.remote_id is None and self._locator.can_locate(slot):
            # Created with an unknown outcome: find it, if the service can.
            found = await self._locator.locate(slot, closing)
            if found is not None:
                target = closing.evolve(remote_id=found.id)
        if target.remote_id is not None:
            try:
                await self._calls.call(
                    slot,
                    lambda: slot.provider.close(target),
                    operation="close",
                    session_id=session_id,
                )
            except RemoteNotFoundError:
                pass
            except TetherError as exc:
                # The record stays CLOSING, for a later close or reconcile.
                log.warning(
                    EVENT_SESSION_CLOSE_FAILED,
                    error=type(exc).__name__,
                    retry_after=getattr(exc, "retry_after", None),
                )
                self._bus.emit(
                    EventKind.CLOSE_FAILED,
                    provider=record.provider,
                    session=closing,
                    previous=previous,
                    detail=f"{type(exc).__name__}: {exc}",
                )
                raise
        closed = await self._records.mutate(
            session_id,
            lambda s: (
                s.transition(SessionState.CLOSED, remote_id=target.remote_id)
                if s.state is SessionState.CLOSING
                else None
            ),
            known=closing,
        )
        runtime.untrack(session_id)
        log.info(EVENT_SESSION_CLOSED)
        self._bus.emit(
            EventKind.CLOSED,
            provider=record.provider,
            session=closed,
            previous=previous,
        )
        return closed

    async def close_lost(self, session_id: str) -> None:
        """
        Ask the service to end a LOST session, keeping the record LOST.
        """
        record = await self._runtime.store.get(session_id)
        if (
            record is None
            or record.state is not SessionState.LOST
            or not record.remote_id
        ):
            return
        slot = self._slots.get(record.provider)
        with (
            contextlib.suppress(TetherError),
            anyio.move_on_after(self._runtime.shield_timeout),
        ):
            await self._calls.call(
                slot,
                functools.partial(slot.provider.close, record),
                operation="close",
                session_id=session_id,
                budget=_retry.AttemptBudget(total=1),
                breaker=False,
            )

    async def close_tracked(self) -> None:
        """
        Close every session this manager tracks, and the LOST ones it tracked
        (the manager is exiting with ``on_exit="close"``).
        """
        runtime = self._runtime
        lost = runtime.lost - set(runtime.tracked)
        ids = list(runtime.tracked)
        if not ids and not lost:
            return
        limiter = anyio.CapacityLimiter(16)

        async def close_one(session_id: str) -> None:
            tracked = runtime.tracked.get(session_id)
            async with limiter:
                with anyio.move_on_after(runtime.shield_timeout):
                    try:
                        with self._bus.operation(
                            "close",
                            provider=tracked.provider if tracked else None,
                            session_id=session_id,
                        ):
                            await self.close(session_id)
                    except TetherError as exc:
                        logger.warning(
                            EVENT_SESSION_CLOSE_FAILED,
                            session_id=session_id,
                            error=type(exc).__name__,
                            detail=str(exc),
                        )

        async with anyio.create_task_group() as tg:
            for session_id in ids:
                tg.start_soon(close_one, session_id)
            for session_id in lost:
                tg.start_soon(self.close_lost, session_id)
