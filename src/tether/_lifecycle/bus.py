"""
Lifecycle events, to each subscriber of :meth:`SessionManager.events` and to
the instrumentation.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tether._events import Event, EventKind
from tether._lifecycle.runtime import Runtime
from tether._session import Session, SessionState
from tether.abc import Instrumentation


class EventBus:
    """
    Hands each event to every subscriber, never waiting for a slow one.
    """

    def __init__(
        self, runtime: Runtime, instrumentation: Instrumentation | None
    ) -> None:
        self._runtime = runtime
        self._instrumentation = instrumentation
        self._subscribers: list[MemoryObjectSendStream[Event]] = []

    @contextlib.asynccontextmanager
    async def subscribe(
        self, buffer: int
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(send)
            send.close()

    @contextlib.contextmanager
    def operation(
        self, name: str, *, provider: str | None, session_id: str | None
    ) -> Iterator[MutableMapping[str, Any]]:
        """
        One operation in the instrumentation (a span): its ``outcome`` is
        ``"ok"`` or the class name of the error that ended it.
        """
        if self._instrumentation is None:
            yield {}
            return
        with self._instrumentation.operation(
            name, provider=provider, session_id=session_id
        ) as attributes:
            try:
                yield attributes
            except BaseException as exc:
                attributes["outcome"] = type(exc).__name__
                raise
            attributes["outcome"] = "ok"

    @property
    def instrumented(self) -> bool:
        return self._instrumentation is not None

    def close(self) -> None:
        """
        End every subscription (the manager is closing).
        """
        for stream in self._subscribers:
            stream.close()

    def emit(
        self,
        kind: EventKind,
        *,
        provider: str,
        session: Session | None = None,
        previous: SessionState | None = None,
        detail: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        if not self._subscribers and self._instrumentation is None:
            return
        event = Event(
            kind=kind,
            at=self._runtime.now(),
            provider=provider,
            session=session,
            previous_state=previous,
            detail=detail,
            data=data or {},
        )
        if self._instrumentation is not None:
            with contextlib.suppress(Exception):
                self._instrumentation.on_event(event)
        for stream in list(self._subscribers):
            with contextlib.suppress(
                anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                stream.send_nowait(event)
