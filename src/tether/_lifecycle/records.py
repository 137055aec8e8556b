"""
Writes to the store: read-modify-write with the store's version check, the
fencing token of the current background job's lease, and what a write means
for the sessions this manager tracks.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import anyio

from tether._handle import SessionHandle
from tether._lifecycle.runtime import Runtime
from tether._session import Session, SessionState
from tether.exceptions import (
    InvalidParameterError,
    LeaseLostError,
    SessionNotFoundError,
    StaleRecordError,
)


#: The fencing token of the lease the current background job holds, if any.
_fence: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tether_fence", default=None
)


@contextlib.contextmanager
def fenced(token: int) -> Iterator[None]:
    """
    Every write in the block carries *token*: a lapsed lease's writes fail.

    Workers run job after job: the fence must not outlive its job.
    """
    reset = _fence.set(token)
    try:
        yield
    finally:
        _fence.reset(reset)


class Records:
    """
    The session records of one manager.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        # Made by an admission that waits; set (and dropped) when a slot frees.
        self._slot_freed: anyio.Event | None = None
        # The handles of each session, kept up to date with its record.
        self._handles: dict[str, weakref.WeakSet[SessionHandle[Any]]] = {}

    def follow(self, handle: SessionHandle[Any]) -> None:
        """
        Keep *handle*'s record current with every write of this manager.
        """
        self._handles.setdefault(handle.id, weakref.WeakSet()).add(handle)

    def observed(self, record: Session) -> None:
        """
        *record* is the session's newest: tell its handles.
        """
        handles = self._handles.get(record.id)
        if handles is None:
            return
        for handle in list(handles):
            handle._observe(record)  # noqa: SLF001
        if not handles or record.state.is_terminal:
            del self._handles[record.id]

    def slot_freed(self) -> anyio.Event:
        """
        An event set the next time a live session of this manager ends.
        """
        if self._slot_freed is None:
            self._slot_freed = anyio.Event()
        return self._slot_freed

    async def current(self, session: Session | SessionHandle[Any] | str) -> Session:
        """
        The current record of *session* (a record or its id).

        Raises:
            InvalidParameterError: *session* is neither (nothing was read).
            SessionNotFoundError: No such record.
        """
        raw: object = session  # untyped callers get a typed error
        if isinstance(raw, str):
            session_id = raw
        elif isinstance(raw, Session | SessionHandle):
            session_id = raw.id
        else:
            msg = (
                "expected a tether.Session or a session id (str), "
                f"not {type(raw).__name__}"
            )
            raise InvalidParameterError(msg, field="session")
        record = await self._runtime.store.get(session_id)
        if record is None:
            msg = f"tether tracks no session {session_id}"
            raise SessionNotFoundError(msg, session_id=session_id)
        return record

    async def mutate(
        self,
        session_id: str,
        change: Callable[[Session], Session | None],
        *,
        known: Session | None = None,
    ) -> Session:
        """
        Apply *change* to the current record, re-reading when another writer won.

        *change* returns the new record, or ``None`` to leave it as it is.
        *known* is the record as this task last read or wrote it: tried first,
        since the store's version check catches it if it is out of date.
        """
        runtime = self._runtime
        for _ in range(16):
            if known is not None:
                current, known = known, None
            else:
                current = await self.current(session_id)
            new = change(current)
            if new is None:
                return current
            if new is current:
                new = new.evolve(updated_at=runtime.now())
            else:
                # A value *change* just built and nobody else holds yet: stamp
                # it in place rather than copy it again (the hot path).
                object.__setattr__(new, "updated_at", runtime.now())
            try:
                stored = await runtime.store.update(new, fence=_fence.get())
            except LeaseLostError:
                raise
            except StaleRecordError:
                continue
            self.after_write(current, stored)
            return stored
        msg = f"session {session_id} kept changing under us"
        raise StaleRecordError(msg, session_id=session_id, expected=-1, actual=-1)

    def after_write(self, before: Session, after: Session) -> None:
        """
        Keep the tracked copy and handles in step; a session that ended frees
        its slot, cancels its scopes and leaves tracking (a LOST one stays, to
        be closed on exit).
        """
        if self._handles:
            self.observed(after)
        tracked = self._runtime.tracked.get(after.id)
        if tracked is not None:
            if self._runtime.cached_records:
                tracked.record = after
            tracked.state = after.state
            tracked.expires_at = (
                after.expires_at.timestamp() if after.expires_at else None
            )
        if before.state is after.state:
            return
        if before.state.is_live and not after.state.is_live:
            # A credential slot may have freed up: wake waiting admissions.
            if self._slot_freed is not None:
                self._slot_freed.set()
                self._slot_freed = None
        if after.state.is_terminal:
            if tracked is not None:
                for scope in tracked.scopes or ():
                    scope.cancel()
            if after.state is not SessionState.LOST or tracked is None:
                self._runtime.untrack(after.id)
