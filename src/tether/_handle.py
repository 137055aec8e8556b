"""
Session handles: a live session to work inside, with the provider's operations
as methods, under the manager's guarantees.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from tether._session import Session, SessionState


if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from tether.abc import Provider


P = TypeVar("P", bound="Provider[Any]")
T = TypeVar("T")
H = TypeVar("H", bound="SessionHandle[Any]")

#: What a handle's operations go through: (handle, operation name, the call).
Operate = Callable[
    ["SessionHandle[Any]", str, Callable[[Session], Awaitable[Any]]], Awaitable[Any]
]


@attrs.frozen(kw_only=True)
class Operation:
    """
    One operation a provider offers on a live session (``execute``, ``chat``).

    Attributes:
        idempotent: Whether doing it twice is harmless, so a try whose answer
            was lost may be repeated. Others are retried only when the request
            was not carried out (it was not sent, or the service refused it
            before acting: a 503, a 429).
    """

    idempotent: bool = False


class SessionHandle(Generic[P]):
    """
    A live session, and the provider's operations on it as methods.

    Get one from :meth:`tether.SessionManager.session` with a provider class::

        async with manager.session(SandboxProvider, vcpu_count=2) as sb:
            result = await sb.execute("print(1)")

    Its attributes are the session's current record; each operation first
    checks the session is usable (raising
    :class:`~tether.exceptions.SessionEndedError` before anything is sent),
    then runs under the manager's retry policy, in a span of its own, with an
    ``operation`` event. A handle is accepted wherever a :class:`~tether.Session`
    or a session id is (``ping``, ``update``, ``renew``, ``close``, ``scope``).

    Providers subclass it, one method per operation, each a call of
    :meth:`run`; a provider's :attr:`~tether.abc.Provider.handle_class` names
    its subclass.
    """

    __slots__ = ("__weakref__", "_operate", "_provider", "_record")

    def __init__(self, record: Session, provider: P, *, operate: Operate) -> None:
        self._record = record
        self._provider = provider
        self._operate = operate

    def __repr__(self) -> str:
        record = self.session
        return (
            f"<{type(self).__name__} {record.provider} {record.id} "
            f"{record.state.value}>"
        )

    @property
    def session(self) -> Session:
        """
        The session's record as this process last wrote or read it.
        """
        return self._record

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def provider_name(self) -> str:
        return self._record.provider

    @property
    def state(self) -> SessionState:
        return self._record.state

    @property
    def expires_at(self) -> datetime | None:
        return self._record.expires_at

    @property
    def remote_id(self) -> str | None:
        return self._record.remote_id

    @property
    def labels(self) -> Mapping[str, str]:
        return self._record.labels

    @property
    def provider(self) -> P:
        """
        The running provider, for what has no handle method yet.
        """
        return self._provider

    async def run(self, operation: str, call: Callable[[Session], Awaitable[T]]) -> T:
        """
        Run ``call(record)`` as the provider operation *operation*, under the
        manager's guarantees (see the class docs).
        """
        result: T = await self._operate(self, operation, call)
        return result

    def _observe(self, record: Session) -> None:
        # The manager hands each newer record of the session to its handles.
        if record.version >= self._record.version:
            self._record = record


class SyncSessionHandle(Generic[H]):
    """
    A :class:`SessionHandle` for synchronous code: the same attributes, and
    each operation a blocking call on the manager's event loop. Get one from
    :meth:`tether.SyncSessionManager.session` with a provider class::

        with manager.session(SandboxProvider) as sb:
            out = sb.execute("print(1)")

    Providers subclass it beside their handle, one blocking method per
    operation (each a :meth:`call` of the async one); a provider's
    :attr:`~tether.abc.Provider.sync_handle_class` names the subclass.
    """

    __slots__ = ("_handle", "_portal")

    def __init__(self, handle: H, portal: BlockingPortal) -> None:
        self._handle = handle
        self._portal = portal

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._handle!r}>"

    @property
    def handle(self) -> H:
        """
        The async handle underneath (for use on the manager's event loop).
        """
        return self._handle

    @property
    def session(self) -> Session:
        return self._handle.session

    @property
    def id(self) -> str:
        return self._handle.id

    @property
    def state(self) -> SessionState:
        return self._handle.state

    @property
    def expires_at(self) -> datetime | None:
        return self._handle.expires_at

    @property
    def remote_id(self) -> str | None:
        return self._handle.remote_id

    @property
    def labels(self) -> Mapping[str, str]:
        return self._handle.labels

    def call(
        self, operation: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> T:
        """
        Run an async operation of the handle, blocking until it is done.
        """
        result: T = self._portal.call(functools.partial(operation, *args, **kwargs))
        return result
