"""
A synchronous facade over :class:`~tether.SessionManager`, for code without an event loop.

It runs one async :class:`~tether.SessionManager` on an event loop in a
background thread (:func:`anyio.from_thread.start_blocking_portal`) and forwards
every call to it: there is one implementation of the lifecycle, and this class
only carries calls across the thread boundary.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    overload,
)

from anyio.from_thread import BlockingPortal, start_blocking_portal

from tether._config import FailoverPolicy
from tether._handle import SessionHandle, SyncSessionHandle
from tether._lifecycle.pools import Pool, PoolSnapshot
from tether._manager import ManagerSnapshot, ManagerStateError, SessionManager


if TYPE_CHECKING:
    from types import TracebackType

    from tether._manager import ReconcileReport
    from tether._session import Health, Session, SessionState
    from tether.abc import Provider, RemoteSession

    #: A session as the sync API accepts it: its record, a handle, or its id.
    SyncSessionLike: TypeAlias = (
        Session | SessionHandle[Any] | SyncSessionHandle[Any] | str
    )


T = TypeVar("T")
SH = TypeVar("SH", bound=SyncSessionHandle[Any])
SH_co = TypeVar("SH_co", bound=SyncSessionHandle[Any], covariant=True)
PR = TypeVar("PR", bound="Provider[Any]")


class _SyncHandled(Protocol[SH_co]):
    """
    A provider class, as :meth:`SyncSessionManager.session` reads its handle type.
    """

    @property
    def sync_handle_class(self) -> type[SH_co]: ...


def _unwrap(
    session: Session | SessionHandle[Any] | SyncSessionHandle[Any] | str,
) -> Session | SessionHandle[Any] | str:
    return session.handle if isinstance(session, SyncSessionHandle) else session


def _sync_handle(
    handle: SessionHandle[Any], portal: BlockingPortal
) -> SyncSessionHandle[Any]:
    # The blocking twin its provider names, around the async handle.
    sync_class: type[SyncSessionHandle[Any]] = type(handle.provider).sync_handle_class
    return sync_class(handle, portal)


Backend = Literal["asyncio", "trio"]


class SyncPool(Generic[SH]):
    """
    A :class:`~tether.Pool` for synchronous code, from
    :meth:`SyncSessionManager.pool`; do not instantiate directly::

        pool = manager.pool(SandboxProvider, min_idle=2)
        with pool.acquire() as sb:
            sb.execute("print(1)")

    .. versionadded:: 0.2
    """

    __slots__ = ("_manager", "_pool")

    def __init__(self, pool: Pool[Any], manager: SyncSessionManager) -> None:
        self._pool = pool
        # The portal comes from the manager at each call: once it exits, a
        # call raises ManagerStateError, not the portal's RuntimeError.
        self._manager = manager

    def _portal(self) -> BlockingPortal:
        return self._manager._open()[0]  # noqa: SLF001 -- its own facade

    def __repr__(self) -> str:
        return f"<SyncPool of {self._pool!r}>"

    @property
    def pool(self) -> Pool[Any]:
        """
        The async pool underneath (for use on the manager's event loop).
        """
        return self._pool

    @property
    def name(self) -> str:
        return self._pool.name

    @contextlib.contextmanager
    def acquire(self) -> Iterator[SH]:
        """
        A session for the ``with`` block, handed back when it ends; see
        :meth:`tether.Pool.acquire`.
        """
        portal = self._portal()
        with portal.wrap_async_context_manager(self._pool.acquire()) as handle:
            yield cast("SH", _sync_handle(handle, portal))

    def snapshot(self) -> PoolSnapshot:
        """
        The pool's figures now; see :meth:`tether.Pool.snapshot`.
        """
        return self._portal().call(self._pool.snapshot)


class SyncSessionManager:
    """
    :class:`~tether.SessionManager` for synchronous code.

    Use it as a (plain) context manager; it takes the same keyword arguments as
    :class:`~tether.SessionManager` and behaves the same, because it runs one::

        with tether.SyncSessionManager() as manager:
            with manager.session("sandbox", vcpu_count=2) as s:
                manager.ping(s)

    It works from the main thread and from worker threads (not from inside a
    running event loop's thread, which it would block: use the async manager
    there). All methods may be called from several threads at once; the calls
    run on the manager's event loop.

    Provider-specific operations, which are async methods of a provider, go
    through :meth:`call`::

        sandbox = manager.provider("sandbox")
        result = manager.call(sandbox.execute, s, "print(1)")

    Args:
        backend: The event loop to run the manager on: ``"asyncio"`` or
            ``"trio"``.
        backend_options: Passed to :func:`anyio.run` (e.g. ``{"use_uvloop": True}``).
        portal: Run on this already started portal instead of starting one
            (its event loop then outlives the manager).
        **manager_options: Keyword arguments of :class:`~tether.SessionManager`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        backend: Backend = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
        portal: BlockingPortal | None = None,
        **manager_options: Any,
    ) -> None:
        if backend not in ("asyncio", "trio"):
            msg = f"backend must be 'asyncio' or 'trio', not {backend!r}"
            raise ValueError(msg)
        self._backend = backend
        self._backend_options = dict(backend_options or {})
        self._given_portal = portal
        self._manager_options = manager_options
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._manager: SessionManager | None = None
        self._entered = False

    def __repr__(self) -> str:
        state = (
            "open"
            if self._manager is not None
            else ("closed" if self._entered else "unopened")
        )
        return f"<SyncSessionManager backend={self._backend!r} state={state}>"

    # -- entering and leaving --------------------------------------------------

    def __enter__(self) -> SyncSessionManager:
        if self._entered:
            msg = "a SyncSessionManager can be entered only once"
            raise ManagerStateError(msg)
        self._entered = True
        with contextlib.ExitStack() as stack:
            if self._given_portal is not None:
                portal = self._given_portal
            else:
                portal = stack.enter_context(
                    start_blocking_portal(
                        backend=self._backend,
                        backend_options=self._backend_options or None,
                    )
                )
            # The manager makes anyio primitives when built, so it is built on
            # the loop it will run on.
            manager = portal.call(
                functools.partial(SessionManager, **self._manager_options)
            )
            stack.enter_context(portal.wrap_async_context_manager(manager))
            self._stack = stack.pop_all()
        self._portal = portal
        self._manager = manager
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._manager = None
        self._portal = None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    # -- plumbing --------------------------------------------------------------

    def _open(self) -> tuple[BlockingPortal, SessionManager]:
        if self._portal is None or self._manager is None:
            msg = (
                "this SyncSessionManager is closed"
                if self._entered
                else "use the SyncSessionManager inside 'with' first"
            )
            raise ManagerStateError(msg)
        return self._portal, self._manager

    @property
    def manager(self) -> SessionManager:
        """
        The async manager underneath, for use on :attr:`portal`'s event loop.
        """
        return self._open()[1]

    @property
    def portal(self) -> BlockingPortal:
        """
        The portal to the event loop the manager runs on.
        """
        return self._open()[0]

    def call(self, func: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """
        Run an async function on the manager's event loop and return its result.

        For provider-specific operations, e.g.
        ``manager.call(manager.provider("sandbox").execute, s, "print(1)")``.
        Use :func:`functools.partial` for keyword arguments.
        """
        portal, _ = self._open()
        return portal.call(func, *args)

    # -- the lifecycle ---------------------------------------------------------

    def create(
        self,
        /,
        provider: str | FailoverPolicy,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> Session:
        """
        Create a session and return it ACTIVE. See :meth:`tether.SessionManager.create`.
        """
        portal, manager = self._open()
        return portal.call(
            functools.partial(
                manager.create,
                provider,
                labels=labels,
                lifetime=lifetime,
                keepalive=keepalive,
                **params,
            )
        )

    @overload
    def session(
        self,
        provider: _SyncHandled[SH],
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> contextlib.AbstractContextManager[SH]: ...

    @overload
    def session(
        self,
        provider: str | FailoverPolicy,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> contextlib.AbstractContextManager[Session]: ...

    @contextlib.contextmanager
    def session(
        self,
        provider: _SyncHandled[Any] | str | FailoverPolicy,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> Iterator[Any]:
        """
        Create a session for the ``with`` block and close it when the block ends.

        Given a provider class, the block gets its
        :class:`~tether.abc.SyncSessionHandle` (blocking operations); given a
        name, the :class:`~tether.Session`. See :meth:`tether.SessionManager.session`.
        """
        portal, manager = self._open()
        with portal.wrap_async_context_manager(
            manager.session(
                provider,  # type: ignore[arg-type]
                labels=labels,
                lifetime=lifetime,
                keepalive=keepalive,
                **params,
            )
        ) as created:
            if isinstance(created, SessionHandle):
                yield _sync_handle(created, portal)
            else:
                yield created

    @overload
    def pool(
        self,
        provider: _SyncHandled[SH],
        /,
        **options: Any,
    ) -> SyncPool[SH]: ...

    @overload
    def pool(
        self,
        provider: str | FailoverPolicy,
        /,
        **options: Any,
    ) -> SyncPool[SyncSessionHandle[Any]]: ...

    def pool(
        self,
        provider: _SyncHandled[Any] | str | FailoverPolicy,
        /,
        **options: Any,
    ) -> SyncPool[Any]:
        """
        A warm pool; takes the arguments of :meth:`tether.SessionManager.pool`.
        Its :meth:`~SyncPool.acquire` is a plain context manager giving the
        provider's :class:`~tether.abc.SyncSessionHandle`.

        .. versionadded:: 0.2
        """
        portal, manager = self._open()
        pool = portal.call(
            functools.partial(
                manager.pool,
                provider,
                **options,
            )
        )
        return SyncPool(pool, self)

    def ping(self, session: SyncSessionLike) -> Health:
        """
        Ask the service how the session is. See :meth:`tether.SessionManager.ping`.
        """
        portal, manager = self._open()
        return portal.call(manager.ping, _unwrap(session))

    def update(self, /, session: SyncSessionLike, **changes: Any) -> Session:
        """
        Change a session in place. See :meth:`tether.SessionManager.update`.
        """
        portal, manager = self._open()
        return portal.call(
            functools.partial(manager.update, _unwrap(session), **changes)
        )

    def renew(
        self, session: SyncSessionLike, *, lifetime: float | timedelta | None = None
    ) -> Session:
        """
        Extend a session's lifetime. See :meth:`tether.SessionManager.renew`.
        """
        portal, manager = self._open()
        return portal.call(
            functools.partial(manager.renew, _unwrap(session), lifetime=lifetime)
        )

    def close(self, session: SyncSessionLike) -> Session:
        """
        Close a session on its service. See :meth:`tether.SessionManager.close`.
        """
        portal, manager = self._open()
        return portal.call(manager.close, _unwrap(session))

    def get(self, session_id: str) -> Session:
        """
        The current record of a session. See :meth:`tether.SessionManager.get`.
        """
        portal, manager = self._open()
        return portal.call(manager.get, session_id)

    def handle(self, session: SyncSessionLike) -> SyncSessionHandle[Any]:
        """
        A blocking handle on *session* (its provider's
        :attr:`~tether.abc.Provider.sync_handle_class`), for sessions made
        with :meth:`create`, :meth:`attach` or :meth:`connect`. See
        :meth:`tether.SessionManager.handle`.

        .. versionadded:: Unreleased
        """
        portal, manager = self._open()
        given = _unwrap(session)
        if isinstance(given, SessionHandle):
            record = given.session
        elif isinstance(given, str):
            record = portal.call(manager.get, given)
        else:
            record = given
        handle = portal.call(manager.handle, record)
        return _sync_handle(handle, portal)

    @overload
    def connect(
        self,
        provider: _SyncHandled[SH],
        remote_id: str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
    ) -> SH: ...

    @overload
    def connect(
        self,
        provider: str,
        remote_id: str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
    ) -> Session: ...

    def connect(
        self,
        provider: _SyncHandled[Any] | str,
        remote_id: str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
    ) -> Session | SyncSessionHandle[Any]:
        """
        Take over a session tether did not create, checked by a get first.
        Given a provider class, returns its blocking handle; given a name,
        the session. See :meth:`tether.SessionManager.connect`.

        .. versionadded:: Unreleased
        """
        portal, manager = self._open()
        # A provider class is one for the async manager too.
        target = cast("Any", provider)

        async def connect() -> Session | SessionHandle[Any]:
            taken: Session | SessionHandle[Any] = await manager.connect(
                target, remote_id, labels=labels, lifetime=lifetime
            )
            return taken

        connected: Session | SessionHandle[Any] = portal.call(connect)
        if isinstance(connected, SessionHandle):
            return _sync_handle(connected, portal)
        return connected

    def search(
        self,
        provider: _SyncHandled[Any] | str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        **filters: Any,
    ) -> builtins.list[RemoteSession]:
        """
        Ask the service (not the store) for its sessions matching *labels*
        and the provider's *filters*. See :meth:`tether.SessionManager.search`.

        .. versionadded:: Unreleased
        """
        portal, manager = self._open()
        return portal.call(
            functools.partial(
                manager.search, cast("Any", provider), labels=labels, **filters
            )
        )

    def attach(self, session_id: str) -> Session:
        """
        Take over watching a recorded session. See :meth:`tether.SessionManager.attach`.
        """
        portal, manager = self._open()
        return portal.call(manager.attach, session_id)

    def list(
        self,
        *,
        provider: str | None = None,
        state: SessionState | Sequence[SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Session]:
        """
        The sessions on record, filtered. See :meth:`tether.SessionManager.list`.
        """
        portal, manager = self._open()
        return portal.call(
            functools.partial(
                manager.list, provider=provider, state=state, labels=labels
            )
        )

    def reconcile(self, **options: Any) -> ReconcileReport:
        """
        Compare the store with the services and repair. See :meth:`tether.SessionManager.reconcile`.
        """
        portal, manager = self._open()
        return portal.call(functools.partial(manager.reconcile, **options))

    def snapshot(self) -> ManagerSnapshot:
        """
        Per-provider and per-session health. See :meth:`tether.SessionManager.snapshot`.
        """
        portal, manager = self._open()
        # Read on the loop's thread, so the view is consistent.
        return portal.call(manager.snapshot)

    @overload
    def provider(self, name: type[PR]) -> PR: ...
    @overload
    def provider(self, name: str) -> Provider[Any]: ...
    def provider(self, name: type[PR] | str) -> PR | Provider[Any]:
        """
        The running provider *name* (or of that class, typed as it); call its
        async methods through :meth:`call`.

        Raises:
            ProviderNotFoundError: No such provider.
            ConfigError: Its config is missing or invalid.

        .. versionchanged:: Unreleased
           Takes the provider's class too.
        """
        portal, manager = self._open()
        return portal.call(manager.provider, name)
