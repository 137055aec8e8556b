"""
Session handles: a live session to work inside, with the provider's operations
as methods, under the manager's guarantees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from tether._session import Session, SessionState


if TYPE_CHECKING:
    from tether.abc import Provider


P = TypeVar("P", bound="Provider[Any]")
T = TypeVar("T")

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
