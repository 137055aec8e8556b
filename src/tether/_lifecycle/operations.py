"""
Work on live sessions: in-place updates, and the operations of session
handles (``execute``, ``chat``, ...), each refused once the session ended,
retried where safe, traced and evented. Also the decorator that traces the
manager's public operations.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio

from tether._events import EventKind
from tether._handle import SessionHandle
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.creation import check_labels
from tether._lifecycle.records import Records
from tether._lifecycle.runtime import Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import Slots
from tether._log import EVENT_SESSION_UPDATED, logger
from tether._session import Session
from tether.abc import Provider, RemoteSession


T = TypeVar("T")
P = ParamSpec("P")


class _Traced(Protocol):
    @property
    def _bus(self) -> EventBus: ...


S = TypeVar("S", bound=_Traced)


def instrumented(
    name: str,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[object, None, T]]],
    Callable[Concatenate[S, P], Coroutine[object, None, T]],
]:
    """
    Wrap a public operation in the manager's instrumentation, if it has one.

    Typed as returning a coroutine (what anyio's ``start_soon`` asks for) whose
    yield and send types hold no ``Any``, so overloads that take an awaitable
    (a blocking portal's ``call``) still infer the result's type.
    """

    def decorate(
        fn: Callable[Concatenate[S, P], Coroutine[object, None, T]],
    ) -> Callable[Concatenate[S, P], Coroutine[object, None, T]]:
        @functools.wraps(fn)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            bus = self._bus
            if not bus.instrumented:
                return await fn(self, *args, **kwargs)
            target = args[0] if args else None
            provider = session_id = None
            if isinstance(target, Session):
                provider, session_id = target.provider, target.id
            elif isinstance(target, SessionHandle):
                provider, session_id = target.provider_name, target.id
            elif isinstance(target, str):
                if name in ("create", "connect"):
                    provider = target
                else:
                    session_id = target
            with bus.operation(
                name, provider=provider, session_id=session_id
            ) as attributes:
                result = await fn(self, *args, **kwargs)
                if isinstance(result, Session):
                    attributes["session_id"] = result.id
                    attributes["provider"] = result.provider
                elif isinstance(result, SessionHandle):
                    attributes["session_id"] = result.id
                    attributes["provider"] = result.provider_name
                return result

        return wrapper

    return decorate


class Operations:
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
        self._scheduler = scheduler
        self._runtime = runtime
        self._slots = slots
        self._calls = calls
        self._records = records
        self._bus = bus

    async def update(
        self, session: Session | SessionHandle[Any] | str, changes: Mapping[str, Any]
    ) -> Session:
        """
        What :meth:`SessionManager.update` does.
        """
        record = await self._records.current(session)
        record.ensure_usable()
        slot = self._slots.get(record.provider)
        if not slot.provider.capabilities.update:
            raise slot.provider.not_supported("update")
        parsed = slot.provider.parse_update(changes)
        remote = await self._calls.call(
            slot,
            lambda: slot.provider.update(record, parsed),
            operation="update",
            session_id=record.id,
        )

        def apply(current: Session) -> Session | None:
            current.ensure_usable()
            return current.evolve(
                remote_id=remote.id or current.remote_id,
                raw_state=remote.raw_state or current.raw_state,
                expires_at=remote.expires_at or current.expires_at,
                data=remote.data,
            )

        updated = await self._records.mutate(record.id, apply)
        logger.info(
            EVENT_SESSION_UPDATED,
            provider=record.provider,
            session_id=record.id,
            fields=sorted(parsed),
        )
        self._bus.emit(EventKind.UPDATED, provider=record.provider, session=updated)
        return updated

    async def search(
        self,
        provider: str,
        labels: Mapping[str, str] | None,
        filters: Mapping[str, Any],
    ) -> list[RemoteSession]:
        """
        What :meth:`SessionManager.search` does.
        """
        wanted = check_labels(labels)
        slot = self._slots.get(provider)
        if not slot.provider.capabilities.list and (
            type(slot.provider).search is Provider.search
        ):
            raise slot.provider.not_supported("search")
        parsed = slot.provider.parse_search(filters)
        found = await self._calls.call(
            slot,
            lambda: slot.provider.search(wanted, parsed),
            operation="search",
        )
        return list(found)

    def handle(self, session: Session) -> SessionHandle[Any]:
        """
        A handle on *session*, kept current with its record.
        """
        slot = self._slots.get(session.provider)
        handle = type(slot.provider).handle_class(
            session, slot.provider, operate=self.run
        )
        self._records.follow(handle)
        return handle

    async def run(
        self,
        handle: SessionHandle[Any],
        operation: str,
        call: Callable[[Session], Awaitable[T]],
    ) -> T:
        """
        One provider operation on a live session: refused before anything is
        sent once the session ended, retried where the provider declared it
        safe, in a span, with an ``operation`` event.
        """
        self._runtime.check_open()
        record = await self._records.current(handle.id)
        self._records.observed(record)
        record.ensure_usable()
        slot = self._slots.get(record.provider)
        declared = type(slot.provider).operations.get(operation)
        outcome = "ok"
        with self._bus.operation(
            operation, provider=record.provider, session_id=record.id
        ):
            try:
                return await self._calls.call(
                    slot,
                    lambda: call(record),
                    operation=operation,
                    idempotent=declared.idempotent if declared else False,
                    session_id=record.id,
                    breaker=False,
                )
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                self._bus.emit(
                    EventKind.OPERATION,
                    provider=record.provider,
                    session=record,
                    detail=outcome,
                    data={"operation": operation},
                )

    @contextlib.asynccontextmanager
    async def scope(
        self, session: Session | SessionHandle[Any] | str
    ) -> AsyncIterator[anyio.CancelScope]:
        """
        What :meth:`SessionManager.scope` does: the block is cancelled when
        the session ends, and SessionEndedError raised from it.
        """
        runtime = self._runtime
        record = await self._records.current(session)
        record.ensure_usable()
        if record.id not in runtime.tracked:
            self._scheduler.track(record)
        tracked = runtime.tracked[record.id]
        with anyio.CancelScope() as cancel_scope:
            if tracked.scopes is None:
                tracked.scopes = set()
            tracked.scopes.add(cancel_scope)
            try:
                yield cancel_scope
            finally:
                if tracked.scopes is not None:
                    tracked.scopes.discard(cancel_scope)
        if cancel_scope.cancelled_caught:
            (await self._records.current(record.id)).ensure_usable()
