"""
The SessionManager: one lifecycle for every provider.

The manager is a facade: it checks its arguments, then hands each operation to
the collaborator that owns it (``tether._lifecycle``: creation, health,
deadlines, closing, reconcile, the scheduler and its jobs, the record writes).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    cast,
    overload,
)

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream

from tether._clock import Clock, SystemClock
from tether._config import AdmissionPolicy, FailoverPolicy, HealthPolicy, RetryPolicy
from tether._events import BreakerPolicy, Event
from tether._handle import SessionHandle
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.closing import Closer
from tether._lifecycle.creation import Creator, positive_seconds
from tether._lifecycle.deadlines import Deadlines
from tether._lifecycle.health import HealthMonitor
from tether._lifecycle.jobs import Jobs
from tether._lifecycle.locate import Locator
from tether._lifecycle.operations import Operations, instrumented
from tether._lifecycle.pools import Pool, Pools
from tether._lifecycle.reconcile import OrphanPolicy, Reconciler, UnwatchedPolicy
from tether._lifecycle.records import Records
from tether._lifecycle.reports import (
    ManagerSnapshot,
    ProviderSnapshot,
    ReconcileAction,
    ReconcileReport,
    SessionSnapshot,
    snapshot,
)
from tether._lifecycle.runtime import ManagerState, ManagerStateError, Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import ClientFactory, Slots
from tether._log import (
    EVENT_MANAGER_STARTED,
    EVENT_MANAGER_STOPPED,
    EVENT_SESSION_KEPT,
    logger,
)
from tether._registry import ProviderRegistry, default_registry
from tether._session import Health, Session, SessionState
from tether._store import MemoryStore
from tether.abc import Instrumentation, Provider, RemoteSession, Store
from tether.exceptions import ConfigError, ProviderUnavailableError, TetherError


if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "ClientFactory",
    "ManagerSnapshot",
    "ManagerStateError",
    "OnExit",
    "OrphanPolicy",
    "ProviderSnapshot",
    "ReconcileAction",
    "ReconcileReport",
    "SessionManager",
    "SessionSnapshot",
]

T = TypeVar("T")
P = ParamSpec("P")

OnExit = Literal["close", "keep"]

#: A session as the public API accepts it: its record, a handle, or its id.
SessionLike = Session | SessionHandle[Any] | str

H = TypeVar("H", bound=SessionHandle[Any])
H_co = TypeVar("H_co", bound=SessionHandle[Any], covariant=True)
PR = TypeVar("PR", bound="Provider[Any]")


class _Base(TypedDict):
    """
    What every collaborator below the manager is built with.
    """

    runtime: Runtime
    slots: Slots
    calls: Calls
    records: Records


class _Handled(Protocol[H_co]):
    """
    A provider class, as :meth:`SessionManager.session` reads its handle type.
    """

    @property
    def handle_class(self) -> type[H_co]: ...


class SessionManager:
    """
    Owns the lifecycle of remote sessions across every provider.

    Use it as an async context manager: it runs health pinging, expiry and
    keepalive in its own task group, owns one HTTP client per provider, and on
    exit closes (or keeps, by *on_exit*) the sessions it created or attached::

        async with tether.SessionManager() as manager:
            async with manager.session("sandbox", vcpu_count=2) as s:
                await manager.ping(s)

    Args:
        config: Per-provider config: a mapping of provider name to a mapping of
            fields (or a ready config object). Fields not given come from
            ``TETHER_<PROVIDER>_<FIELD>`` environment variables.
        registry: Where providers are found; by default the installed
            ``tether.providers`` entry points plus :func:`register_provider`.
        store: Where session records live: a :class:`~tether.abc.Store`, or a
            URL (``memory://``, ``sqlite:///path``, ``redis://host:port/0``),
            which the manager opens and closes. By default in memory.
        retry: The retry policy for provider calls.
        health: Background pinging (interval, jitter, failure threshold).
        health_checks: Shorthand to switch background pinging off.
        admission: What to do when a credential is at its session limit.
        breakers: When providers and failover candidates are taken out of rotation.
        clock: The time source; tests pass :class:`tether.testing.ManualClock`.
        on_exit: ``"close"`` the sessions this manager tracks when it exits,
            or ``"keep"`` them (they stay in the store, for :meth:`attach`).
        shield_timeout: Seconds a create or close may still take after its caller
            was cancelled, so no remote session is left untracked.
        client_factory: Builds each provider's :class:`httpx.AsyncClient` from
            its :class:`~tether.abc.ClientOptions` (to pick a transport, proxies,
            limits). The manager closes what it returns.
        environ: The environment to read config from (default ``os.environ``).
        watch: Also watch live sessions recorded by other managers on a shared
            store: each session's pings and expiry are leased to exactly one
            live worker, and taken over when its worker dies.
        instrumentation: Tracing and metrics hooks, e.g.
            ``tether.otel.OpenTelemetryInstrumentation()``.
        retain_ended: Seconds the record of a closed, expired or failed session
            stays in the store (for :meth:`get`, :meth:`list` and
            :meth:`reconcile`) before the manager deletes it, so a long-running
            service's store does not grow without end. ``None`` keeps them all.
            LOST and CLOSING records are kept: they may still need a close.
    """

    def __init__(
        self,
        *,
        config: Mapping[str, Any] | None = None,
        registry: ProviderRegistry | None = None,
        store: Store | str | None = None,
        retry: RetryPolicy | None = None,
        health: HealthPolicy | None = None,
        health_checks: bool | None = None,
        admission: AdmissionPolicy | None = None,
        breakers: BreakerPolicy | None = None,
        clock: Clock | None = None,
        on_exit: OnExit = "close",
        shield_timeout: float = 30.0,
        client_factory: ClientFactory | None = None,
        environ: Mapping[str, str] | None = None,
        instrumentation: Instrumentation | None = None,
        watch: bool = False,
        retain_ended: float | None = 3600.0,
    ) -> None:
        if on_exit not in ("close", "keep"):
            msg = f"on_exit must be 'close' or 'keep', not {on_exit!r}"
            raise ConfigError(msg)
        if shield_timeout <= 0:
            msg = "shield_timeout must be positive"
            raise ConfigError(msg)
        if retain_ended is not None and not positive_seconds(retain_ended):
            msg = (
                "retain_ended must be a positive number of seconds or None, "
                f"not {retain_ended!r}"
            )
            raise ConfigError(msg)
        health = health or HealthPolicy()
        if health_checks is not None:
            health = attrs.evolve(health, enabled=health_checks)
        self._store_url = store if isinstance(store, str) else None
        self._on_exit: OnExit = on_exit
        runtime = self._runtime = Runtime(
            clock=clock or SystemClock(),
            store=(
                store
                if store is not None and not isinstance(store, str)
                else MemoryStore()
            ),
            retry=retry or RetryPolicy(),
            health=health,
            admission=admission or AdmissionPolicy(),
            shield_timeout=shield_timeout,
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            watch=watch,
            retain_ended=retain_ended,
        )
        # The collaborators, each below the ones that use it.
        self._bus = bus = EventBus(runtime, instrumentation)
        self._slots = slots = Slots(
            runtime,
            registry=registry if registry is not None else default_registry(),
            config=dict(config or {}),
            environ=environ if environ is not None else os.environ,
            client_factory=client_factory,
            breakers=breakers or BreakerPolicy(),
            instrumentation=instrumentation,
        )
        calls = self._calls = Calls(runtime, bus)
        records = self._records = Records(runtime)
        scheduler = self._scheduler = Scheduler(runtime, slots)
        locator = Locator(runtime, calls)
        base = _Base(runtime=runtime, slots=slots, calls=calls, records=records)
        closer = self._closer = Closer(**base, bus=bus, locator=locator)
        creator = self._creator = Creator(
            **base, bus=bus, scheduler=scheduler, locator=locator, closer=closer
        )
        deadlines = self._deadlines = Deadlines(**base, bus=bus, scheduler=scheduler)
        health_monitor = self._health = HealthMonitor(
            **base, bus=bus, scheduler=scheduler, deadlines=deadlines, creator=creator
        )
        self._operations = operations = Operations(**base, bus=bus, scheduler=scheduler)
        self._pools = Pools(
            **base,
            bus=bus,
            creator=creator,
            closer=closer,
            health=health_monitor,
            operations=operations,
        )
        self._jobs = Jobs(
            runtime=runtime,
            slots=slots,
            scheduler=scheduler,
            health=health_monitor,
            deadlines=deadlines,
        )
        self._reconciler = Reconciler(
            **base,
            scheduler=scheduler,
            locator=locator,
            closer=closer,
            health=health_monitor,
        )

    def __repr__(self) -> str:
        return (
            f"<SessionManager state={self._runtime.state.name.lower()} "
            f"providers={self._slots.names()} tracked={len(self._runtime.tracked)}>"
        )

    @property
    def _store(self) -> Store:
        return self._runtime.store

    # -- entering and leaving --------------------------------------------------

    async def __aenter__(self) -> SessionManager:
        runtime = self._runtime
        if runtime.state is not ManagerState.UNOPENED:
            msg = "a SessionManager can be entered only once"
            raise ManagerStateError(msg)
        runtime.state = ManagerState.OPEN
        self._exit_stack = contextlib.AsyncExitStack()
        await self._exit_stack.__aenter__()
        try:
            if self._store_url is not None:
                from tether.stores import open_store  # noqa: PLC0415

                runtime.store = open_store(self._store_url)
                self._exit_stack.push_async_callback(runtime.store.aclose)
            # Once background work has stopped: give up shards, if any.
            self._exit_stack.push_async_callback(self._jobs.aclose)
            runtime.tg = await self._exit_stack.enter_async_context(
                anyio.create_task_group()
            )
            await self._scheduler.start(
                runtime.tg, self._jobs.run, workers=runtime.health.max_concurrent
            )
            self._jobs.start()
        except BaseException:
            runtime.state = ManagerState.CLOSED
            await self._exit_stack.__aexit__(None, None, None)
            raise
        logger.debug(EVENT_MANAGER_STARTED, providers=self._slots.registry.names())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        runtime = self._runtime
        try:
            with anyio.CancelScope(shield=True):
                # Pools first, so no refill starts while the rest closes.
                await self._pools.aclose()
                if self._on_exit == "close":
                    await self._closer.close_tracked()
                else:
                    for tracked in runtime.tracked.values():
                        logger.info(
                            EVENT_SESSION_KEPT,
                            provider=tracked.provider,
                            session_id=tracked.session_id,
                        )
        finally:
            runtime.state = ManagerState.CLOSED
            if runtime.tg is not None:
                runtime.tg.cancel_scope.cancel()
            self._bus.close()
            try:
                # The body's own exception is not the task group's business:
                # passed in, it would come out wrapped in an ExceptionGroup.
                # Background work never raises, so the group exits cleanly, and
                # the body's exception (cancellation included) propagates as is.
                await self._exit_stack.__aexit__(None, None, None)
            finally:
                with runtime.shielded():
                    await self._slots.aclose()
                logger.debug(EVENT_MANAGER_STOPPED)
        return None

    def __del__(self) -> None:
        runtime = getattr(self, "_runtime", None)
        if runtime is not None and runtime.state is ManagerState.OPEN:
            warnings.warn(
                "SessionManager was not closed: use it with 'async with'",
                ResourceWarning,
                stacklevel=1,
            )

    # -- providers -------------------------------------------------------------

    @overload
    def provider(self, name: type[PR]) -> PR: ...
    @overload
    def provider(self, name: str) -> Provider[Any]: ...
    def provider(self, name: type[PR] | str) -> PR | Provider[Any]:
        """
        The running provider *name*, for provider-specific operations.

        Loads and configures it on first use: config errors surface here, before
        any network call. Asked for by its class (``manager.provider(
        SandboxProvider)``), it is typed as that class.

        Raises:
            ProviderNotFoundError: No such provider.
            ProviderLoadError: It failed to load.
            ConfigError: Its config is missing or invalid.

        .. versionchanged:: Unreleased
           Takes the provider's class too.
        """
        return self._slots.get(self._provider_name(name)).provider

    # -- events -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def events(
        self, *, buffer: int = 1000
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """
        Subscribe to lifecycle events for the length of the block.

        ::

            async with manager.events() as events:
                async for event in events:
                    print(event.kind, event.session)

        A subscriber that falls more than *buffer* events behind misses the
        newest ones rather than slowing the manager down.
        """
        self._runtime.check_open()
        async with self._bus.subscribe(buffer) as receive:
            yield receive

    # -- the lifecycle ----------------------------------------------------------------

    @instrumented("create")
    async def create(
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
        Create a session and return it ACTIVE.

        Args:
            provider: A provider name, or a :class:`FailoverPolicy` listing where to
                try, in order.
            labels: Your labels, for :meth:`list`.
            lifetime: Seconds (or a timedelta) the session should live. Providers
                with a server-side lifetime pass it on; for the others, tether
                closes the session at the deadline.
            keepalive: Renew the session before its deadline, where the provider
                can.
            **params: The provider's own parameters, validated before any
                network call.

        Raises:
            InvalidParameterError: Bad parameters (nothing was sent).
            AdmissionError: The credential is at its session limit.
            ProviderError: Every attempt failed; the last error.
            OutcomeUnknownError: The service may have created it; the record is
                kept (state CREATING) for :meth:`reconcile`.
        """
        self._runtime.check_open()
        return await self._creator.create(
            provider,
            labels=labels,
            lifetime=lifetime,
            keepalive=keepalive,
            params=params,
        )

    @overload
    def session(
        self,
        provider: _Handled[H],
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> contextlib.AbstractAsyncContextManager[H]: ...

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
    ) -> contextlib.AbstractAsyncContextManager[Session]: ...

    def session(
        self,
        provider: _Handled[Any] | str | FailoverPolicy,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        """
        Create a session for the block, and close it when the block ends.

        The close is shielded: it happens on error and on cancellation too.
        Takes the same arguments as :meth:`create`. Given a provider *class*
        (``manager.session(SandboxProvider, vcpu_count=2)``), the block gets
        its typed :class:`~tether.abc.SessionHandle`, whose methods are the
        provider's operations; given a name or a policy, the
        :class:`~tether.Session`.
        """
        if isinstance(provider, str | FailoverPolicy):
            return self._session_block(
                provider,
                labels=labels,
                lifetime=lifetime,
                keepalive=keepalive,
                params=params,
            )
        return self._handle_block(
            cast("type[Provider[Any]]", provider),
            labels=labels,
            lifetime=lifetime,
            keepalive=keepalive,
            params=params,
        )

    @contextlib.asynccontextmanager
    async def _session_block(
        self,
        provider: str | FailoverPolicy,
        *,
        labels: Mapping[str, str] | None,
        lifetime: float | timedelta | None,
        keepalive: bool,
        params: Mapping[str, Any],
    ) -> AsyncIterator[Session]:
        created = await self.create(
            provider, labels=labels, lifetime=lifetime, keepalive=keepalive, **params
        )
        try:
            yield created
        except BaseException:
            # The block's own error wins; a failed close stays on record
            # (CLOSING) for a later close or reconcile, and is logged.
            with contextlib.suppress(TetherError):
                await self._close_at_exit(created)
            raise
        await self._close_at_exit(created)

    @contextlib.asynccontextmanager
    async def _handle_block(
        self,
        provider: type[Provider[Any]],
        *,
        labels: Mapping[str, str] | None,
        lifetime: float | timedelta | None,
        keepalive: bool,
        params: Mapping[str, Any],
    ) -> AsyncIterator[SessionHandle[Any]]:
        self._runtime.check_open()
        name = self._slots.registry.name_of(provider)
        async with self._session_block(
            name, labels=labels, lifetime=lifetime, keepalive=keepalive, params=params
        ) as created:
            yield self.handle(created)

    @overload
    def pool(
        self,
        provider: _Handled[H],
        /,
        *,
        min_idle: int = 0,
        max_size: int = 10,
        timeout: float = 30.0,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        ping_on_acquire: bool = True,
        min_remaining: float | None = None,
        **params: Any,
    ) -> Pool[H]: ...

    @overload
    def pool(
        self,
        provider: str | FailoverPolicy,
        /,
        *,
        min_idle: int = 0,
        max_size: int = 10,
        timeout: float = 30.0,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        ping_on_acquire: bool = True,
        min_remaining: float | None = None,
        **params: Any,
    ) -> Pool[SessionHandle[Any]]: ...

    def pool(
        self,
        provider: _Handled[Any] | str | FailoverPolicy,
        /,
        *,
        min_idle: int = 0,
        max_size: int = 10,
        timeout: float = 30.0,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        ping_on_acquire: bool = True,
        min_remaining: float | None = None,
        **params: Any,
    ) -> Pool[Any]:
        """
        A warm pool of sessions of *provider* with *params*: ready before you
        ask, handed out by :meth:`Pool.acquire() <tether.Pool.acquire>`.

        The same arguments give the same pool. See :doc:`/pools`.

        Args:
            provider: A provider class (the pool hands out its typed handle),
                name, or :class:`FailoverPolicy` (refills fail over too).
            min_idle: Idle sessions kept ready, refilled in the background.
            max_size: The most sessions the pool holds at once, in use or not.
            timeout: Seconds :meth:`~tether.Pool.acquire` waits for a session
                when all *max_size* are in use, before it raises
                :class:`~tether.exceptions.PoolExhaustedError`.
            name: The pool's name, its sessions' ``tether.pool`` label; by
                default the provider's and a digest of *params*.
            labels: More labels for the pool's sessions.
            lifetime: Each session's lifetime, as for :meth:`create`.
            ping_on_acquire: Ping an idle session before handing it out (on
                top of background pings), so one the service ended meanwhile
                is replaced, not handed out.
            min_remaining: An idle session closer than this many seconds to
                its deadline is replaced (default: a tenth of its lifetime).
            **params: The provider's create parameters, checked here.

        Raises:
            ConfigError: Bad pool settings, or a pool of that name with others.
            InvalidParameterError: Bad parameters (nothing was sent).

        .. versionadded:: 0.2
        """
        self._runtime.check_open()
        target: str | FailoverPolicy = (
            provider
            if isinstance(provider, FailoverPolicy)
            else self._provider_name(provider)
        )
        return self._pools.get(
            target,
            name=name,
            labels=labels,
            lifetime=lifetime,
            min_idle=min_idle,
            max_size=max_size,
            timeout=timeout,
            ping_on_acquire=ping_on_acquire,
            min_remaining=min_remaining,
            params=params,
        )

    def handle(self, session: Session) -> SessionHandle[Any]:
        """
        A handle on *session* (its provider's :attr:`~tether.abc.Provider.handle_class`),
        for sessions made with :meth:`create`, :meth:`attach` or :meth:`connect`.
        """
        self._runtime.check_open()
        return self._operations.handle(session)

    async def _close_at_exit(self, session: Session) -> None:
        # A close of its own, in the instrumentation too.
        runtime = self._runtime
        with self._bus.operation(
            "close", provider=session.provider, session_id=session.id
        ):
            with runtime.shielded():
                await self._closer.close(session.id)
                return
            raise self._close_timed_out(session)

    def _close_timed_out(self, record: Session) -> ProviderUnavailableError:
        # The closer has said so (a warning, a close_failed event, a note on
        # the record, which stays CLOSING).
        msg = (
            f"closing {record.id} did not finish within "
            f"{self._runtime.shield_timeout}s; the record stays closing"
        )
        return ProviderUnavailableError(
            msg, provider=record.provider, operation="close", session_id=record.id
        )

    @instrumented("ping")
    async def ping(self, session: SessionLike) -> Health:
        """
        Ask the service how the session is now, and update its state.

        A failed ping (after retries) returns a ``DEGRADED`` health and counts
        towards LOST; a service that says the session is gone makes it LOST at
        once.

        Raises:
            SessionEndedError: The session has ended.
            PermanentProviderError: The service refused the ping (e.g. auth).
        """
        self._runtime.check_open()
        return await self._health.ping(session)

    @instrumented("update")
    async def update(self, /, session: SessionLike, **changes: Any) -> Session:
        """
        Change a session in place, and return it.

        Raises:
            NotSupportedError: The service cannot (nothing was sent).
            InvalidParameterError: Bad changes (nothing was sent).
            SessionEndedError: The session has ended.
        """
        self._runtime.check_open()
        return await self._operations.update(session, changes)

    @instrumented("renew")
    async def renew(
        self, session: SessionLike, *, lifetime: float | timedelta | None = None
    ) -> Session:
        """
        Extend a session's lifetime by *lifetime* seconds from now (default: its own).

        Never shortens a lifetime. For providers without a server-side lifetime,
        the deadline is tether's own and is moved here.

        Raises:
            NotSupportedError: The service has a lifetime it cannot extend.
        """
        self._runtime.check_open()
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
        return await self._deadlines.renew(session, lifetime)

    @instrumented("close")
    async def close(self, session: SessionLike) -> Session:
        """
        Close a session on its service, and return it CLOSED.

        Idempotent: closing a closed, expired or failed session returns it as it
        is. Shielded and bounded: cancelling the caller does not abandon a close
        half-way.

        Raises:
            ProviderError: The service could not close it; the record stays
                CLOSING, for a later close or :meth:`reconcile`, with the
                reason in its ``error``, and a ``close_failed`` event and a
                ``tether.session.close_failed`` warning say so.
            ProviderUnavailableError: The close did not finish within
                ``shield_timeout``; the record stays CLOSING the same way.
        """
        runtime = self._runtime
        runtime.check_open()
        record = await self._records.current(session)
        with runtime.shielded():
            return await self._closer.close(record.id, record)
        raise self._close_timed_out(record)

    # -- reconciling ------------------------------------------------------------------

    @instrumented("reconcile")
    async def reconcile(
        self,
        *,
        provider: str | None = None,
        dry_run: bool = False,
        orphans: OrphanPolicy = "close",
        grace: float = 300.0,
        unwatched: UnwatchedPolicy = "report",
    ) -> ReconcileReport:
        """
        Compare the store with what each provider reports, and repair the difference.

        For every provider with records, configured, or in use (or *provider*
        alone):

        - a live record whose remote session vanished becomes LOST;
        - a CREATING record (a crash or an unknown outcome between intent and
          answer) is adopted when the service has it, and FAILED when it does
          not and is older than *grace* seconds;
        - a CLOSING record is closed again;
        - a live record whose lease no manager holds is reported (or attached),
          unless it belongs to a pool (label ``tether.pool``): a pool lives in
          its manager's process, so its sessions have no user left, and are
          closed;
        - a remote session that carries tether's tag but whose record is ended,
          or missing and older than *grace*, is an orphan: closed (or adopted,
          or only reported, by *orphans*).

        Providers that can list are asked once; the others are asked per record
        with ``get`` (a provider with neither, like Sipher, relies on expiry).

        Args:
            provider: Only this provider.
            dry_run: Only report what would be done.
            orphans: ``"close"``, ``"adopt"`` or ``"report"`` tagged orphans.
            grace: Seconds a CREATING record or an untracked remote session is
                left alone, since its create may still be under way (0: none).
            unwatched: What to do with a live session whose lease no manager
                holds (the one that made it died without watch mode, so
                nothing pings, expires or closes it): ``"report"`` it, or
                ``"attach"`` it to this manager (then its ``on_exit`` applies).

        Returns:
            What was found and done.
        """
        self._runtime.check_open()
        return await self._reconciler.reconcile(
            provider=provider,
            dry_run=dry_run,
            orphans=orphans,
            grace=grace,
            unwatched=unwatched,
        )

    # -- looking up -------------------------------------------------------------------

    async def get(self, session_id: str) -> Session:
        """
        The current record of a session.

        Raises:
            SessionNotFoundError: tether has no record of it.
        """
        self._runtime.check_open()
        return await self._records.current(session_id)

    @overload
    async def connect(
        self,
        provider: _Handled[H],
        remote_id: str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
    ) -> H: ...

    @overload
    async def connect(
        self,
        provider: str,
        remote_id: str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
    ) -> Session: ...

    @instrumented("connect")
    async def connect(
        self,
        provider: _Handled[Any] | str,
        remote_id: str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
    ) -> Session | SessionHandle[Any]:
        """
        Take over a session tether did not create (E2B's ``connect``, Modal's
        ``from_id``): the service is asked for it first, then it is recorded,
        watched and closed like any other (``on_exit`` included).

        Given a provider class, returns its handle; given a name, the session.

        Raises:
            NotSupportedError: The service cannot fetch one session.
            RemoteNotFoundError: The service has no such live session.
            InvalidParameterError: Bad *remote_id*, labels or lifetime.
        """
        self._runtime.check_open()
        name = self._provider_name(provider)
        session = await self._creator.connect(
            name, remote_id, labels=labels, lifetime=lifetime
        )
        return session if isinstance(provider, str) else self.handle(session)

    @instrumented("attach")
    async def attach(self, session_id: str) -> Session:
        """
        Take over watching a session recorded earlier (this process or another).

        The session joins this manager's background pinging and expiry, and its
        ``on_exit`` policy.

        Raises:
            SessionNotFoundError: No such record.
            SessionEndedError: It has ended.
        """
        self._runtime.check_open()
        record = await self._records.current(session_id)
        record.ensure_usable()
        self._slots.get(record.provider)
        self._scheduler.track(record)
        return record

    async def list(
        self,
        *,
        provider: str | None = None,
        state: SessionState | Sequence[SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Session]:
        """
        The sessions on record, filtered by provider, state(s) and labels.
        """
        self._runtime.check_open()
        states: Sequence[SessionState] | None
        if state is None:
            states = None
        elif isinstance(state, SessionState):
            states = [state]
        else:
            states = list(state)
        return await self._runtime.store.list(
            provider=provider, states=states, labels=labels
        )

    def _provider_name(self, provider: _Handled[Any] | str) -> str:
        # A provider asked for by name, or by its class (registered under a name).
        if isinstance(provider, str):
            return provider
        return self._slots.registry.name_of(cast("type[Provider[Any]]", provider))

    @instrumented("search")
    async def search(
        self,
        provider: _Handled[Any] | str,
        /,
        *,
        labels: Mapping[str, str] | None = None,
        **filters: Any,
    ) -> builtins.list[RemoteSession]:
        """
        Ask the service (not the store) for its sessions whose labels include
        *labels* and that match the provider's own *filters* (a relay's
        ``user_ip``; :attr:`~tether.abc.Provider.search_filters` names them).

        The service filters where it can (the sandbox's ``metadata`` query);
        otherwise the provider lists and filters. Sessions tether did not
        create are included: :meth:`connect` takes one over.

        Raises:
            NotSupportedError: The service cannot list (nothing was sent).
            InvalidParameterError: Bad labels or an unknown filter (nothing was sent).
        """
        self._runtime.check_open()
        name = self._provider_name(provider)
        return await self._operations.search(name, labels, filters)

    @contextlib.asynccontextmanager
    async def scope(self, session: SessionLike) -> AsyncIterator[anyio.CancelScope]:
        """
        Run work that is cancelled the moment the session ends.

        Like etcd's ``Session.Done()``: when the session becomes LOST, EXPIRED
        or CLOSED, the block is cancelled and
        :class:`~tether.exceptions.SessionEndedError` is raised from it.
        """
        self._runtime.check_open()
        async with self._operations.scope(session) as cancel_scope:
            yield cancel_scope

    def snapshot(self) -> ManagerSnapshot:
        """
        Per-provider health and breakers, and per-session last ping and time to expiry.

        Reads only what this manager holds in memory.
        """
        return snapshot(self._runtime, self._slots)
