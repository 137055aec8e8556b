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
    TetherLogger,
    logger,
)
from tether._session import Session, SessionState
from tether.exceptions import ProviderError, RemoteNotFoundError, TetherError


#: The code of a RemoteNotFoundError from a provider that did not close the
#: session because the service no longer holds it as this record's (Morpheus:
#: the key now holds another session): recorded closed, with a note.
CLOSE_SKIPPED = "close_skipped"
_SKIPPED_NOTE = "close skipped: "
#: A CLOSING record's note after a close that did not finish.
_FAILED_NOTE = "close failed: "


def _closed_note(error: str | None, note: str | None) -> str | None:
    """
    A closed record's error: *note* if any; an earlier failed close's note is
    dropped (the close finished after all), any other error kept.
    """
    if note is not None:
        return note
    if error is not None and error.startswith(_FAILED_NOTE):
        return None
    return error


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
        #: Sessions whose last close did not finish, and said so.
        self._unfinished: set[str] = set()

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
        deadline = anyio.current_effective_deadline()
        log = logger.bind(
            provider=record.provider,
            session_id=session_id,
            remote_id=record.remote_id,
        )
        log.debug(EVENT_SESSION_CLOSING)
        target = closing
        skipped: RemoteNotFoundError | None = None
        try:
            if target.remote_id is None and self._locator.can_locate(slot):
                # Created with an unknown outcome: find it, if the service can.
                found = await self._locator.locate(slot, closing)
                if found is not None:
                    target = closing.evolve(remote_id=found.id)
            if target.remote_id is not None:
                await self._calls.call(
                    slot,
                    lambda: slot.provider.close(target),
                    operation="close",
                    session_id=session_id,
                )
        except RemoteNotFoundError as exc:
            if exc.code == CLOSE_SKIPPED:
                skipped = exc
        except TetherError as exc:
            # The record stays CLOSING, for a later close or reconcile.
            await self._failed(
                closing,
                previous,
                log,
                error=type(exc).__name__,
                note=f"{type(exc).__name__}: {exc}",
                retry_after=getattr(exc, "retry_after", None),
            )
            raise
        except anyio.get_cancelled_exc_class():
            # Out of time (the shield's deadline) or cancelled: nothing says
            # whether the service ended it. The record stays CLOSING, and says so.
            timed_out = anyio.current_time() >= deadline
            await self._failed(
                closing,
                previous,
                log,
                error="ProviderUnavailableError" if timed_out else "Cancelled",
                note=(
                    f"did not finish within {self._runtime.shield_timeout}s"
                    if timed_out
                    else "cancelled before it finished"
                ),
            )
            raise
        note = None if skipped is None else f"{_SKIPPED_NOTE}{skipped}"

        def to_closed(s: Session) -> Session | None:
            if s.state is not SessionState.CLOSING:
                return None
            closed = s.transition(SessionState.CLOSED, remote_id=target.remote_id)
            error = _closed_note(s.error, note)
            return closed if error == s.error else closed.evolve(error=error)

        closed = await self._records.mutate(session_id, to_closed, known=closing)
        runtime.untrack(session_id)
        self._unfinished.discard(session_id)
        if skipped is None:
            log.info(EVENT_SESSION_CLOSED)
        else:
            log.info(EVENT_SESSION_CLOSED, reason=CLOSE_SKIPPED)
        self._bus.emit(
            EventKind.CLOSED,
            provider=record.provider,
            session=closed,
            previous=previous,
            detail=note,
            data=None if skipped is None else {"reason": CLOSE_SKIPPED},
        )
        return closed

    async def _failed(
        self,
        closing: Session,
        previous: SessionState,
        log: TetherLogger,
        *,
        error: str,
        note: str,
        retry_after: float | None = None,
    ) -> None:
        """
        Say that a close did not finish: a warning, a close_failed event and a
        note on the record, which stays CLOSING (for a later close or
        reconcile).
        """
        note = f"{_FAILED_NOTE}{note}"
        self._unfinished.add(closing.id)
        log.warning(EVENT_SESSION_CLOSE_FAILED, error=error, retry_after=retry_after)
        self._bus.emit(
            EventKind.CLOSE_FAILED,
            provider=closing.provider,
            session=closing.evolve(error=note),
            previous=previous,
            detail=note,
        )
        # Shielded (a cancelled close gets here too), and bounded: a store that
        # does not answer must not hold the caller up.
        with (
            contextlib.suppress(TetherError),
            anyio.move_on_after(self._runtime.shield_timeout, shield=True),
        ):
            await self._records.mutate(
                closing.id,
                lambda s: (
                    s.evolve(error=note) if s.state is SessionState.CLOSING else None
                ),
                known=closing,
            )

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
        error: str | None = None
        with anyio.move_on_after(self._runtime.shield_timeout) as scope:
            try:
                await self._calls.call(
                    slot,
                    functools.partial(slot.provider.close, record),
                    operation="close",
                    session_id=session_id,
                    budget=_retry.AttemptBudget(total=1),
                    breaker=False,
                )
            except RemoteNotFoundError:
                pass
            except TetherError as exc:
                error = type(exc).__name__
        if scope.cancelled_caught:
            error = "ProviderUnavailableError"
        if error is not None:
            # Best effort, but never silent: the service may still run it.
            logger.warning(
                EVENT_SESSION_CLOSE_FAILED,
                provider=record.provider,
                session_id=session_id,
                remote_id=record.remote_id,
                state=record.state.value,
                error=error,
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
                # A close that fails or runs out of time is reported by close()
                # itself (a warning, a close_failed event, a note on the
                # record); only a failure before it reached the service is
                # logged here.
                with anyio.move_on_after(runtime.shield_timeout) as scope:
                    try:
                        with self._bus.operation(
                            "close",
                            provider=tracked.provider if tracked else None,
                            session_id=session_id,
                        ):
                            await self.close(session_id)
                    except ProviderError:
                        pass
                    except TetherError as exc:
                        logger.warning(
                            EVENT_SESSION_CLOSE_FAILED,
                            provider=tracked.provider if tracked else None,
                            session_id=session_id,
                            error=type(exc).__name__,
                            detail=str(exc),
                        )
                if scope.cancelled_caught and session_id not in self._unfinished:
                    # Out of time before the service was asked (the store).
                    logger.warning(
                        EVENT_SESSION_CLOSE_FAILED,
                        provider=tracked.provider if tracked else None,
                        session_id=session_id,
                        error="ProviderUnavailableError",
                        detail=f"did not finish within {runtime.shield_timeout}s",
                    )

        async with anyio.create_task_group() as tg:
            for session_id in ids:
                tg.start_soon(close_one, session_id)
            for session_id in lost:
                tg.start_soon(self.close_lost, session_id)
