"""
The SessionManager: one lifecycle for every provider.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import heapq
import itertools
import math
import os
import random
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Final, Literal, ParamSpec, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tether import _retry
from tether._clock import Clock, SystemClock, to_datetime
from tether._config import (
    AdmissionPolicy,
    Candidate,
    FailoverPolicy,
    HealthPolicy,
    RetryPolicy,
    build_provider_config,
)
from tether._events import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Event,
    EventKind,
)
from tether._log import (
    EVENT_BREAKER_CLOSED,
    EVENT_BREAKER_HALF_OPEN,
    EVENT_BREAKER_OPENED,
    EVENT_FAILOVER,
    EVENT_MANAGER_STARTED,
    EVENT_MANAGER_STOPPED,
    EVENT_SESSION_ADOPTED,
    EVENT_SESSION_CLOSE_FAILED,
    EVENT_SESSION_CLOSED,
    EVENT_SESSION_CLOSING,
    EVENT_SESSION_CREATE_FAILED,
    EVENT_SESSION_CREATED,
    EVENT_SESSION_CREATING,
    EVENT_SESSION_DEGRADED,
    EVENT_SESSION_EXPIRED,
    EVENT_SESSION_KEPT,
    EVENT_SESSION_LOST,
    EVENT_SESSION_OUTCOME_UNKNOWN,
    EVENT_SESSION_PINGED,
    EVENT_SESSION_RECOVERED,
    EVENT_SESSION_RENEWED,
    EVENT_SESSION_UPDATED,
    EVENT_STORE_PRUNED,
    logger,
)
from tether._registry import ProviderRegistry, default_registry
from tether._session import (
    Health,
    HealthStatus,
    Session,
    SessionState,
    stamp_health,
)
from tether._store import MemoryStore
from tether._transport import build_client
from tether.abc import (
    ClientOptions,
    CreateRequest,
    Instrumentation,
    Provider,
    RemoteSession,
    Store,
)
from tether.exceptions import (
    AdmissionError,
    ConfigError,
    InvalidParameterError,
    LeaseLostError,
    NotSupportedError,
    OutcomeUnknownError,
    ProviderError,
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    SessionEndedError,
    SessionNotFoundError,
    StaleRecordError,
    TetherError,
    TransientProviderError,
)


if TYPE_CHECKING:
    from types import TracebackType


T = TypeVar("T")

ClientFactory = Callable[[str, ClientOptions], httpx.AsyncClient]
OnExit = Literal["close", "keep"]


class ManagerStateError(TetherError, RuntimeError):
    """
    The manager is used outside its ``async with`` block, or re-entered.
    """


class _State(enum.Enum):
    UNOPENED = 1
    OPEN = 2
    CLOSED = 3


@attrs.define
class _Slot:
    """
    One provider as the manager runs it.
    """

    name: str
    provider: Provider[Any]
    client: httpx.AsyncClient
    ping_interval: float
    breaker: CircuitBreaker
    transport: str = "httpx"
    # The credential's fingerprint: the config is frozen, so it is worked out once.
    credential: str | None = None


@attrs.define
class _Tracked:
    """
    What this manager knows at run time about a session it watches.
    """

    session_id: str
    provider: str
    state: SessionState = SessionState.ACTIVE
    expires_at: float | None = None
    failures: int = 0
    last_ok: bool | None = None
    last_ping_at: float | None = None
    failover: FailoverPolicy | None = None
    candidate: Candidate | None = None
    # Lazily made: most sessions never run a bound scope (memory per session).
    scopes: set[anyio.CancelScope] | None = None
    # The sequence number of each job's live heap entry (0: none scheduled).
    ping_seq: int = 0
    expire_seq: int = 0
    renew_seq: int = 0


OrphanPolicy = Literal["close", "adopt", "report"]


@attrs.frozen(kw_only=True)
class ReconcileAction:
    """
    One thing :meth:`SessionManager.reconcile` found (and did, unless a dry run).

    Attributes:
        kind: ``"adopted"``, ``"lost"``, ``"failed"``, ``"closed"``, ``"orphan"``
            (reported only), ``"foreign"`` (not tether's, left alone) or
            ``"unresolved"`` (the service cannot say), ``"skipped"`` (a provider
            this process cannot load).
        provider: The provider.
        session_id: tether's id, when there is a record.
        remote_id: The service's id, when known.
        detail: Why, in words.
    """

    kind: str
    provider: str
    session_id: str | None
    remote_id: str | None
    detail: str


@attrs.frozen(kw_only=True)
class ReconcileReport:
    """
    What :meth:`SessionManager.reconcile` found and did.
    """

    dry_run: bool
    actions: tuple[ReconcileAction, ...]

    @property
    def counts(self) -> dict[str, int]:
        """
        How many actions of each kind.
        """
        result: dict[str, int] = {}
        for action in self.actions:
            result[action.kind] = result.get(action.kind, 0) + 1
        return result


@attrs.define
class _CreateAttempts:
    """
    What one create's attempts did on the service, whatever the caller does.
    """

    created: RemoteSession | None = None
    maybe_created: bool = False


class _CancelledCreateError(TetherError):
    """
    Why a create that was cancelled before the service answered is FAILED.
    """


@attrs.frozen(kw_only=True)
class SessionSnapshot:
    """
    One session's health at a glance.
    """

    id: str
    provider: str
    state: SessionState
    last_ping_at: datetime | None
    last_ping_ok: bool | None
    consecutive_failures: int
    seconds_to_expiry: float | None


@attrs.frozen(kw_only=True)
class ProviderSnapshot:
    """
    One provider's health at a glance.
    """

    name: str
    breaker: BreakerState
    breaker_failures: int
    ping_interval: float
    sessions: Mapping[str, int]
    transport: str


@attrs.frozen(kw_only=True)
class ManagerSnapshot:
    """
    What :meth:`SessionManager.snapshot` returns.
    """

    at: datetime
    providers: Mapping[str, ProviderSnapshot]
    breakers: Mapping[str, BreakerState]
    sessions: tuple[SessionSnapshot, ...]


P = ParamSpec("P")

# Ended for good: their records may be deleted after retain_ended. (LOST and
# CLOSING may still need a close on the service.)
_PRUNABLE: Final = (SessionState.CLOSED, SessionState.EXPIRED, SessionState.FAILED)
# Stands for a key that is not there (None may be a value).
_MISSING: Final = object()
# A context manager that does nothing, reusable by any number of tasks at once.
_NO_SHIELD: Final = contextlib.nullcontext()


def _positive_seconds(value: object) -> bool:
    # Typed callers pass numbers; untyped ones get a typed error, not a crash.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _new_id() -> str:
    """
    A new session id: ``uuid.uuid4().hex``, without building a UUID object.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


def _instrumented(
    name: str,
) -> Callable[
    [Callable[Concatenate[SessionManager, P], Awaitable[T]]],
    Callable[Concatenate[SessionManager, P], Awaitable[T]],
]:
    """
    Wrap a public operation in the manager's instrumentation, if it has one.
    """

    def decorate(
        fn: Callable[Concatenate[SessionManager, P], Awaitable[T]],
    ) -> Callable[Concatenate[SessionManager, P], Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(
            self: SessionManager, /, *args: P.args, **kwargs: P.kwargs
        ) -> T:
            instrumentation = self._instrumentation
            if instrumentation is None:
                return await fn(self, *args, **kwargs)
            target = args[0] if args else None
            provider = session_id = None
            if isinstance(target, Session):
                provider, session_id = target.provider, target.id
            elif isinstance(target, str):
                if name == "create":
                    provider = target
                else:
                    session_id = target
            with instrumentation.operation(
                name, provider=provider, session_id=session_id
            ) as attributes:
                try:
                    result = await fn(self, *args, **kwargs)
                except BaseException as exc:
                    attributes["outcome"] = type(exc).__name__
                    raise
                attributes["outcome"] = "ok"
                if isinstance(result, Session):
                    attributes["session_id"] = result.id
                    attributes["provider"] = result.provider
                return result

        return wrapper

    return decorate


def _default_client(name: str, options: ClientOptions) -> httpx.AsyncClient:
    return build_client(options)[0]


def _check_labels(labels: Mapping[Any, Any] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    raw: object = labels  # untyped callers get a typed error
    if raw is not None and not isinstance(raw, Mapping):
        msg = f"labels must be a mapping of strings to strings, not {labels!r}"
        raise InvalidParameterError(msg, field="labels", value=labels)
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            msg = f"labels must map strings to strings, got {k!r}: {v!r}"
            raise InvalidParameterError(msg, field="labels", value=labels)
        result[k] = v
    return result


#: The fencing token of the lease the current background job holds, if any.
_fence: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tether_fence", default=None
)

_WATCHED = (SessionState.ACTIVE, SessionState.DEGRADED)


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
        if retain_ended is not None and not _positive_seconds(retain_ended):
            msg = (
                "retain_ended must be a positive number of seconds or None, "
                f"not {retain_ended!r}"
            )
            raise ConfigError(msg)
        self._retain_ended = retain_ended
        self._config = dict(config or {})
        self._registry = registry if registry is not None else default_registry()
        self._store_url = store if isinstance(store, str) else None
        self._store: Store = (
            store if store is not None and not isinstance(store, str) else MemoryStore()
        )
        self._watch = watch
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._retry = retry or RetryPolicy()
        health = health or HealthPolicy()
        if health_checks is not None:
            health = attrs.evolve(health, enabled=health_checks)
        self._health = health
        self._admission = admission or AdmissionPolicy()
        self._breaker_policy = breakers or BreakerPolicy()
        self._clock: Clock = clock or SystemClock()
        self._on_exit: OnExit = on_exit
        self._shield_timeout = shield_timeout
        self._client_factory = client_factory or _default_client
        self._environ = environ if environ is not None else os.environ
        self._instrumentation = instrumentation
        self._state = _State.UNOPENED
        self._slots: dict[str, _Slot] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._lost: set[str] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        # The live heap entry of each manager-wide job (0: none scheduled).
        self._global_seq = {"sweep": 0, "prune": 0}
        self._nap = anyio.CancelScope()
        # Made by an admission that waits; set (and dropped) when a slot frees.
        self._slot_freed: anyio.Event | None = None
        self._subscribers: list[MemoryObjectSendStream[Event]] = []
        self._jobs_send: MemoryObjectSendStream[tuple[str, str]] | None = None
        self._random = random.Random()  # noqa: S311 -- jitter, not security

    def __repr__(self) -> str:
        return (
            f"<SessionManager state={self._state.name.lower()} "
            f"providers={sorted(self._slots)} tracked={len(self._tracked)}>"
        )

    # -- entering and leaving --------------------------------------------------

    async def __aenter__(self) -> SessionManager:
        if self._state is not _State.UNOPENED:
            msg = "a SessionManager can be entered only once"
            raise ManagerStateError(msg)
        self._state = _State.OPEN
        self._exit_stack = contextlib.AsyncExitStack()
        await self._exit_stack.__aenter__()
        try:
            if self._store_url is not None:
                from tether.stores import open_store  # noqa: PLC0415

                self._store = open_store(self._store_url)
                self._exit_stack.push_async_callback(self._store.aclose)
            self._tg = await self._exit_stack.enter_async_context(
                anyio.create_task_group()
            )
            # Due jobs go to a fixed pool of workers: at most max_concurrent run
            # at once, and a burst of due jobs waits in the heap, not as tasks.
            send, receive = anyio.create_memory_object_stream[tuple[str, str]]()
            self._exit_stack.push_async_callback(receive.aclose)
            self._exit_stack.push_async_callback(send.aclose)
            self._jobs_send = send
            for _ in range(self._health.max_concurrent):
                self._tg.start_soon(self._worker, receive)
            await self._tg.start(self._scheduler)
            if self._watch:
                self._schedule("sweep", "*", self._clock.time())
            if self._retain_ended is not None:
                self._schedule(
                    "prune", "*", self._clock.time() + self._prune_interval()
                )
        except BaseException:
            self._state = _State.CLOSED
            await self._exit_stack.__aexit__(None, None, None)
            raise
        logger.debug(EVENT_MANAGER_STARTED, providers=self._registry.names())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            with anyio.CancelScope(shield=True):
                if self._on_exit == "close":
                    await self._close_tracked()
                else:
                    for tracked in self._tracked.values():
                        logger.info(
                            EVENT_SESSION_KEPT,
                            provider=tracked.provider,
                            session_id=tracked.session_id,
                        )
        finally:
            self._state = _State.CLOSED
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            for stream in self._subscribers:
                stream.close()
            try:
                # The body's own exception is not the task group's business:
                # passed in, it would come out wrapped in an ExceptionGroup.
                # Background work never raises, so the group exits cleanly, and
                # the body's exception (cancellation included) propagates as is.
                await self._exit_stack.__aexit__(None, None, None)
            finally:
                with self._shielded():
                    await self._close_providers()
                logger.debug(EVENT_MANAGER_STOPPED)
        return None

    def __del__(self) -> None:
        if getattr(self, "_state", None) is _State.OPEN:
            warnings.warn(
                "SessionManager was not closed: use it with 'async with'",
                ResourceWarning,
                stacklevel=1,
            )

    async def _close_lost(self, session_id: str) -> None:
        """
        Ask the service to end a LOST session, keeping the record LOST.
        """
        record = await self._store.get(session_id)
        if (
            record is None
            or record.state is not SessionState.LOST
            or not record.remote_id
        ):
            return
        slot = self._slot(record.provider)
        with (
            contextlib.suppress(TetherError),
            anyio.move_on_after(self._shield_timeout),
        ):
            await self._call(
                slot,
                functools.partial(slot.provider.close, record),
                operation="close",
                session_id=session_id,
                budget=_retry.AttemptBudget(total=1),
                breaker=False,
            )

    async def _close_tracked(self) -> None:
        lost = self._lost - set(self._tracked)
        ids = list(self._tracked)
        if not ids and not lost:
            return
        limiter = anyio.CapacityLimiter(16)

        async def close_one(session_id: str) -> None:
            async with limiter:
                with anyio.move_on_after(self._shield_timeout):
                    try:
                        await self._close_by_id(session_id)
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
                tg.start_soon(self._close_lost, session_id)

    async def _close_providers(self) -> None:
        for slot in self._slots.values():
            with contextlib.suppress(Exception):
                await slot.provider.aclose()
            with contextlib.suppress(Exception):
                await slot.client.aclose()
        self._slots.clear()

    def _check_open(self) -> None:
        if self._state is _State.OPEN:
            return
        if self._state is _State.UNOPENED:
            msg = "use the SessionManager inside 'async with' first"
            raise ManagerStateError(msg)
        if self._state is _State.CLOSED:
            msg = "this SessionManager is closed"
            raise ManagerStateError(msg)

    def _shielded(self) -> anyio.CancelScope:
        """
        A scope that outer cancellation cannot stop, but that gives up after
        the shield timeout: for work that must not be abandoned half-way.
        """
        return anyio.CancelScope(
            shield=True, deadline=anyio.current_time() + self._shield_timeout
        )

    def _shield_writes(self) -> contextlib.AbstractContextManager[Any]:
        """
        A shield for store writes that must not be interrupted. The memory
        store never suspends, so nothing can interrupt it: no scope needed.
        """
        if type(self._store) is MemoryStore:
            return _NO_SHIELD
        return anyio.CancelScope(shield=True)

    # -- providers -------------------------------------------------------------

    def provider(self, name: str) -> Provider[Any]:
        """
        The running provider *name*, for provider-specific operations.

        Loads and configures it on first use: config errors surface here, before
        any network call.

        Raises:
            ProviderNotFoundError: No such provider.
            ProviderLoadError: It failed to load.
            ConfigError: Its config is missing or invalid.
        """
        return self._slot(name).provider

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is not None and self._state is _State.OPEN:
            return slot
        self._check_open()
        cls = self._registry.load(name)
        config = build_provider_config(
            cls.config_class, name, self._config.get(name), self._environ
        )
        options = cls.client_options(config)
        transport: str
        if self._client_factory is _default_client:
            client, transport = build_client(options)
        else:
            client, transport = self._client_factory(name, options), "custom"
        logger.debug("tether.provider.client_built", provider=name, transport=transport)
        if self._instrumentation is not None:
            self._instrumentation.instrument_client(name, client)
        try:
            provider = cls(config, client=client, name=name)
            # Set after construction, so subclasses' own __init__ need not pass it.
            provider.clock = self._clock.time
        except BaseException:
            # A provider that fails to build must not leak its client.
            self._tg_close_later(client)
            raise
        interval = (
            self._health.interval
            or getattr(config, "ping_interval", None)
            or cls.capabilities.ping_interval
        )
        slot = _Slot(
            name=name,
            provider=provider,
            client=client,
            ping_interval=float(interval),
            breaker=self._breaker(name),
            transport=transport,
            credential=provider.credential_id(),
        )
        self._slots[name] = slot
        return slot

    def _tg_close_later(self, client: httpx.AsyncClient) -> None:
        if self._tg is not None:
            self._tg.start_soon(client.aclose)

    def _breaker(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(
                key=key, policy=self._breaker_policy
            )
        return breaker

    # -- time ------------------------------------------------------------------

    def _now(self) -> datetime:
        return to_datetime(self._clock.time())

    def _budget(self) -> _retry.AttemptBudget:
        return _retry.AttemptBudget(total=self._retry.attempts)

    async def _call(
        self,
        slot: _Slot,
        fn: Callable[[], Awaitable[T]],
        *,
        operation: str,
        budget: _retry.AttemptBudget | None = None,
        idempotent: bool = True,
        session_id: str | None = None,
        breaker: bool = True,
    ) -> T:
        try:
            result = await _retry.call(
                fn,
                policy=self._retry,
                budget=budget,
                sleep=self._clock.sleep,
                time=self._clock.time,
                operation=operation,
                provider=slot.name,
                idempotent=idempotent,
                session_id=session_id,
            )
        except TransientProviderError:
            if breaker:
                self._breaker_failure(slot.breaker, slot.name)
            raise
        if breaker and (
            slot.breaker.failures or slot.breaker.state is not BreakerState.CLOSED
        ):
            self._breaker_success(slot.breaker, slot.name)
        return result

    def _breaker_failure(self, breaker: CircuitBreaker, provider: str) -> None:
        if breaker.record_failure(self._clock.time()) is BreakerState.OPEN:
            logger.warning(EVENT_BREAKER_OPENED, provider=provider, breaker=breaker.key)
            self._emit(
                EventKind.BREAKER_OPENED,
                provider=provider,
                data={"breaker": breaker.key},
            )

    def _breaker_success(self, breaker: CircuitBreaker, provider: str) -> None:
        if breaker.record_success() is BreakerState.CLOSED:
            logger.info(EVENT_BREAKER_CLOSED, provider=provider, breaker=breaker.key)
            self._emit(
                EventKind.BREAKER_CLOSED,
                provider=provider,
                data={"breaker": breaker.key},
            )

    def _breaker_allow(self, breaker: CircuitBreaker, provider: str) -> bool:
        allowed, moved = breaker.allow(self._clock.time())
        if moved is BreakerState.HALF_OPEN:
            logger.info(EVENT_BREAKER_HALF_OPEN, provider=provider, breaker=breaker.key)
            self._emit(
                EventKind.BREAKER_HALF_OPEN,
                provider=provider,
                data={"breaker": breaker.key},
            )
        return allowed

    # -- events ----------------------------------------------------------------

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
        self._check_open()
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(send)
            send.close()

    def _emit(
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
            at=self._now(),
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

    # -- records ---------------------------------------------------------------

    async def _current(self, session: Session | str) -> Session:
        session_id = session if isinstance(session, str) else session.id
        record = await self._store.get(session_id)
        if record is None:
            msg = f"tether tracks no session {session_id}"
            raise SessionNotFoundError(msg, session_id=session_id)
        return record

    async def _mutate(
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
        for _ in range(16):
            if known is not None:
                current, known = known, None
            else:
                current = await self._current(session_id)
            new = change(current)
            if new is None:
                return current
            if new is current:
                new = new.evolve(updated_at=self._now())
            else:
                # A value *change* just built and nobody else holds yet: stamp
                # it in place rather than copy it again (the hot path).
                object.__setattr__(new, "updated_at", self._now())
            try:
                stored = await self._store.update(new, fence=_fence.get())
            except LeaseLostError:
                raise
            except StaleRecordError:
                continue
            self._after_write(current, stored)
            return stored
        msg = f"session {session_id} kept changing under us"
        raise StaleRecordError(msg, session_id=session_id, expected=-1, actual=-1)

    def _after_write(self, before: Session, after: Session) -> None:
        tracked = self._tracked.get(after.id)
        if tracked is not None:
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
            tracked = self._tracked.get(after.id)
            if tracked is not None:
                for scope in tracked.scopes or ():
                    scope.cancel()
            if after.state is not SessionState.LOST or tracked is None:
                self._untrack(after.id)

    def _lease_ttl(self, provider: str) -> float:
        if self._health.lease_ttl is not None:
            return self._health.lease_ttl
        slot = self._slots.get(provider)
        interval = slot.ping_interval if slot is not None else 30.0
        return max(3 * interval, 10.0)

    async def _sweep(self) -> None:
        """
        Adopt live sessions in the store whose lease is free (watch mode).
        """
        try:
            known = set(self._registry.names())
            for record in await self._store.list(states=list(_WATCHED)):
                if record.id in self._tracked or record.provider not in known:
                    continue
                self._slot(record.provider)
                token = await self._store.claim(
                    record.id, self._owner, self._lease_ttl(record.provider)
                )
                if token is not None:
                    logger.info(
                        "tether.lease.acquired", session_id=record.id, owner=self._owner
                    )
                    self._track(record)
        finally:
            if self._watch:
                self._schedule(
                    "sweep", "*", self._clock.time() + self._sweep_interval()
                )

    def _sweep_interval(self) -> float:
        if self._health.lease_ttl is not None:
            return self._health.lease_ttl / 2
        intervals = [slot.ping_interval for slot in self._slots.values()] or [30.0]
        return max(min(intervals), 1.0)

    def _prune_interval(self) -> float:
        assert self._retain_ended is not None  # noqa: S101
        return min(max(self._retain_ended / 2, 1.0), 300.0)

    async def _prune(self) -> None:
        """
        Delete the records of sessions that ended over ``retain_ended`` ago.
        """
        assert self._retain_ended is not None  # noqa: S101
        try:
            cutoff = self._clock.time() - self._retain_ended
            pruned = 0
            for record in await self._store.list(states=list(_PRUNABLE)):
                if (
                    record.updated_at.timestamp() <= cutoff
                    and record.id not in self._tracked
                ):
                    await self._store.delete(record.id)
                    pruned += 1
            if pruned:
                logger.debug(EVENT_STORE_PRUNED, sessions=pruned)
        finally:
            self._schedule("prune", "*", self._clock.time() + self._prune_interval())

    def _untrack(self, session_id: str) -> None:
        # Its heap entries go stale with it, and are skipped when they come due.
        self._tracked.pop(session_id, None)

    # -- scheduling ------------------------------------------------------------

    def _due(self, kind: str, session_id: str) -> int:
        if kind in self._global_seq:
            return self._global_seq[kind]
        tracked = self._tracked.get(session_id)
        return getattr(tracked, f"{kind}_seq") if tracked is not None else 0

    def _clear_due(self, kind: str, session_id: str) -> None:
        if kind in self._global_seq:
            self._global_seq[kind] = 0
        elif (tracked := self._tracked.get(session_id)) is not None:
            setattr(tracked, f"{kind}_seq", 0)

    def _schedule(self, kind: str, session_id: str, at: float) -> None:
        seq = next(self._seq)
        if kind in self._global_seq:
            self._global_seq[kind] = seq
        else:
            tracked = self._tracked.get(session_id)
            if tracked is None:
                return  # only tracked sessions have background work
            setattr(tracked, f"{kind}_seq", seq)
        heapq.heappush(self._heap, (at, seq, kind, session_id))
        if self._heap[0][1] == seq:
            # Earlier than what the scheduler sleeps for: wake it up.
            self._nap.cancel()

    def _track(
        self,
        session: Session,
        *,
        failover: FailoverPolicy | None = None,
        candidate: Candidate | None = None,
    ) -> None:
        tracked = self._tracked.get(session.id)
        if tracked is None:
            tracked = self._tracked[session.id] = _Tracked(
                session_id=session.id, provider=session.provider
            )
        if failover is not None:
            tracked.failover = failover
            tracked.candidate = candidate
        tracked.state = session.state
        tracked.expires_at = (
            session.expires_at.timestamp() if session.expires_at else None
        )
        self._plan(session)

    def _plan(self, session: Session) -> None:
        """
        Schedule the session's next ping, its expiry, and its keepalive.
        """
        if not session.state.is_live or session.id not in self._tracked:
            return
        now = self._clock.time()
        slot = self._slots.get(session.provider)
        if self._health.enabled and slot is not None:
            self._schedule("ping", session.id, now + self._jittered(slot.ping_interval))
        if session.expires_at is not None:
            deadline = session.expires_at.timestamp()
            self._schedule("expire", session.id, deadline)
            if session.keepalive and session.lifetime:
                margin = min(max(session.lifetime * 0.2, 1.0), session.lifetime / 2)
                self._schedule("renew", session.id, max(now, deadline - margin))

    def _jittered(self, interval: float) -> float:
        spread = interval * self._health.jitter
        return max(0.001, interval + self._random.uniform(-spread, spread))

    async def _scheduler(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        assert self._tg is not None  # noqa: S101
        while True:
            while self._heap:
                at, seq, kind, session_id = self._heap[0]
                if self._due(kind, session_id) != seq:
                    heapq.heappop(self._heap)
                    continue
                delay = at - self._clock.time()
                if delay > 0:
                    break
                heapq.heappop(self._heap)
                self._clear_due(kind, session_id)
                assert self._jobs_send is not None  # noqa: S101
                await self._jobs_send.send((kind, session_id))
            # One cancel scope per nap, cancelled by _schedule when something
            # earlier arrives: no helper task, whatever the clock.
            delay = self._heap[0][0] - self._clock.time() if self._heap else math.inf
            with anyio.CancelScope() as self._nap:
                if delay == math.inf:
                    await anyio.sleep_forever()
                else:
                    await self._clock.sleep(delay)

    async def _worker(self, jobs: MemoryObjectReceiveStream[tuple[str, str]]) -> None:
        async for kind, session_id in jobs:
            await self._run_job(kind, session_id)

    async def _run_job(self, kind: str, session_id: str) -> None:
        try:
            if kind == "sweep":
                await self._sweep()
                return
            if kind == "prune":
                await self._prune()
                return
            tracked = self._tracked.get(session_id)
            if tracked is None:
                return
            # Only the lease holder works on a session; its writes carry the
            # fencing token, so a worker whose lease lapsed cannot act on it.
            token = await self._store.claim(
                session_id, self._owner, self._lease_ttl(tracked.provider)
            )
            if token is None:
                self._untrack(session_id)
                return
            # Workers run job after job: the fence must not outlive its job.
            reset = _fence.set(token)
            try:
                if kind == "ping":
                    await self._background_ping(session_id)
                elif kind == "expire":
                    await self._expire(session_id)
                else:
                    await self._keepalive(session_id)
            finally:
                _fence.reset(reset)
        except LeaseLostError:
            logger.warning(
                "tether.lease.lost", session_id=session_id, owner=self._owner
            )
            self._untrack(session_id)
        except ManagerStateError:
            return  # the manager is shutting down
        except Exception as exc:  # noqa: BLE001
            # Background work reports through events and logs, never by crashing
            # the manager (a store's own errors included).
            logger.warning(
                "tether.background.failed",
                job=kind,
                session_id=session_id,
                error=type(exc).__name__,
                detail=str(exc),
            )

    # -- the lifecycle ---------------------------------------------------------

    @_instrumented("create")
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
        self._check_open()
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
        if lifetime is not None and not _positive_seconds(lifetime):
            msg = f"lifetime must be a positive number of seconds, not {lifetime!r}"
            raise InvalidParameterError(msg, field="lifetime", value=lifetime)
        checked_labels = _check_labels(labels)
        keep: object = keepalive
        if not isinstance(keep, bool):
            msg = f"keepalive must be True or False, not {keepalive!r}"
            raise InvalidParameterError(msg, field="keepalive", value=keepalive)
        if isinstance(provider, str):
            slot = self._slot(provider)
            parsed, life = self._check_candidate(
                slot, provider, params, lifetime, keepalive=keepalive
            )
            if slot.breaker.state is BreakerState.CLOSED:
                # One provider with a closed breaker (nearly every create): what
                # the failover loop below would do, without its bookkeeping.
                return await self._create_on(
                    slot,
                    parsed,
                    life,
                    checked_labels,
                    self._budget(),
                    keepalive=keepalive,
                )
            policy: FailoverPolicy | None = None
            plans = [(Candidate(provider=provider, params=params), slot, parsed, life)]
        elif isinstance(provider, FailoverPolicy):
            if params:
                msg = "with a FailoverPolicy, give parameters on each Candidate"
                raise ConfigError(msg)
            policy = provider
            # Validate every candidate before anything is sent anywhere.
            plans = []
            for candidate in provider.candidates:
                slot = self._slot(candidate.provider)
                parsed, life = self._check_candidate(
                    slot,
                    candidate.provider,
                    candidate.params,
                    lifetime,
                    keepalive=keepalive,
                )
                plans.append((candidate, slot, parsed, life))
        else:  # untyped callers get a clear error
            msg = f"provider must be a name or a FailoverPolicy, not {type(provider).__name__}"  # type: ignore[unreachable]
            raise ConfigError(msg)
        budget = self._budget()
        per_candidate = (
            policy.attempts_per_candidate if policy else self._retry.attempts
        )
        return await self._create_failover(
            plans, policy, budget, per_candidate, checked_labels, keepalive=keepalive
        )

    def _check_candidate(
        self,
        slot: _Slot,
        name: str,
        params: Mapping[str, Any],
        lifetime: float | None,
        *,
        keepalive: bool,
    ) -> tuple[dict[str, Any], float | None]:
        """
        One candidate's parameters and lifetime, validated before any request.
        """
        parsed = slot.provider.parse_create(params)
        life = slot.provider.lifetime_for(lifetime, parsed)
        if keepalive and not (
            slot.provider.capabilities.renew
            or not slot.provider.capabilities.server_ttl
        ):
            raise NotSupportedError(
                f"{name} cannot renew, so it cannot keep sessions alive",
                provider=name,
                operation="keepalive",
            )
        if keepalive and life is None:
            msg = "keepalive needs a lifetime to renew (give lifetime=)"
            raise InvalidParameterError(msg, field="keepalive", value=keepalive)
        return parsed, life

    async def _create_failover(
        self,
        plans: list[tuple[Candidate, _Slot, dict[str, Any], float | None]],
        policy: FailoverPolicy | None,
        budget: _retry.AttemptBudget,
        per_candidate: int,
        labels: dict[str, str],
        *,
        keepalive: bool,
        exclude: Candidate | None = None,
    ) -> Session:
        failed: set[int] = set()
        last_error: BaseException | None = None
        previous: Candidate | None = None
        while True:
            progressed = False
            cooling: list[float] = []
            for index, (candidate, slot, parsed, life) in enumerate(plans):
                if index in failed or candidate == exclude:
                    continue
                if budget.exhausted:
                    break
                breakers = [slot.breaker]
                if policy is not None:
                    breakers.append(self._breaker(candidate.breaker_key))
                if not all(
                    self._breaker_allow(b, candidate.provider) for b in breakers
                ):
                    cooling.append(max(b.ready_at() for b in breakers))
                    continue
                progressed = True
                if previous is not None:
                    logger.warning(
                        EVENT_FAILOVER,
                        provider=candidate.provider,
                        previous=previous.breaker_key,
                        next=candidate.breaker_key,
                        cause=type(last_error).__name__,
                    )
                    self._emit(
                        EventKind.FAILOVER,
                        provider=candidate.provider,
                        detail=str(last_error),
                        data={
                            "from": previous.breaker_key,
                            "to": candidate.breaker_key,
                        },
                    )
                share = _retry.AttemptBudget(total=min(per_candidate, budget.left))
                try:
                    session = await self._create_on(
                        slot, parsed, life, labels, share, keepalive=keepalive
                    )
                except (ProviderError, AdmissionError) as exc:
                    budget.used += share.used
                    failed.add(index)
                    last_error = exc
                    previous = candidate
                    if policy is not None:
                        if isinstance(exc, TransientProviderError):
                            self._breaker_failure(
                                self._breaker(candidate.breaker_key), candidate.provider
                            )
                    if policy is None or isinstance(exc, OutcomeUnknownError):
                        raise
                    continue
                budget.used += share.used
                if policy is not None:
                    self._breaker_success(
                        self._breaker(candidate.breaker_key), candidate.provider
                    )
                    self._track(session, failover=policy, candidate=candidate)
                return session
            if progressed or not cooling or budget.exhausted:
                break
            # Every remaining candidate is cooling down: wait for the earliest,
            # within the caller's deadline.
            wait = min(cooling) - self._clock.time()
            deadline = anyio.current_effective_deadline()
            if deadline != math.inf and anyio.current_time() + wait > deadline:
                break
            await self._clock.sleep(max(wait, 0.0))
        if last_error is not None:
            raise last_error
        names = ", ".join(c.breaker_key for c, *_ in plans)
        msg = f"no candidate could be tried ({names}): circuit breakers are open"
        raise ProviderUnavailableError(
            msg, provider=plans[0][0].provider, operation="create"
        )

    async def _admit(self, record: Session, limit: int | None, slot: _Slot) -> Session:
        if limit is None or record.credential is None:
            return await self._store.insert(record)
        mode = self._admission.mode
        with anyio.move_on_after(self._admission.timeout) as scope:
            while True:
                if self._slot_freed is None:
                    self._slot_freed = anyio.Event()
                freed = self._slot_freed
                try:
                    return await self._store.insert(record, credential_limit=limit)
                except AdmissionError:
                    if mode == "reject":
                        raise
                    if mode == "replace":
                        await self._replace_oldest(record, slot)
                        continue
                # Slots this manager frees set the event; other managers on a
                # shared store cannot, so look again now and then.
                with anyio.move_on_after(self._admission.poll_interval):
                    await freed.wait()
        assert scope.cancelled_caught  # noqa: S101
        msg = (
            f"{record.provider}: waited {self._admission.timeout}s for a free session "
            f"slot on this credential (limit {limit})"
        )
        raise AdmissionError(
            msg, provider=record.provider, credential=record.credential, limit=limit
        )

    async def _replace_oldest(self, record: Session, slot: _Slot) -> None:
        live = [
            s
            for s in await self._store.list(provider=record.provider)
            if s.credential == record.credential
            and s.state.is_live
            and s.id != record.id
        ]
        if not live:
            return
        oldest = min(live, key=lambda s: s.created_at)
        with self._shielded():
            await self._close_by_id(oldest.id)

    async def _create_on(
        self,
        slot: _Slot,
        parsed: dict[str, Any],
        lifetime: float | None,
        labels: dict[str, str],
        budget: _retry.AttemptBudget,
        *,
        keepalive: bool,
    ) -> Session:
        provider = slot.provider
        caps = provider.capabilities
        now = self._now()
        record = Session(
            id=_new_id(),
            provider=slot.name,
            state=SessionState.CREATING,
            created_at=now,
            updated_at=now,
            labels=labels,
            params=parsed,
            credential=slot.credential,
            lifetime=lifetime,
            keepalive=keepalive,
        )
        log = logger.bind(provider=slot.name, session_id=record.id)
        # Write-ahead: the intent is recorded before the service hears of it.
        record = await self._admit(record, caps.max_sessions_per_credential, slot)
        log.debug(EVENT_SESSION_CREATING)
        request = CreateRequest(
            tether_id=record.id, params=parsed, labels=labels, lifetime=lifetime
        )
        remote: RemoteSession | None = None
        error: BaseException | None = None
        attempts = _CreateAttempts()
        try:
            try:
                remote = await self._create_remote(slot, request, budget, attempts)
            except Exception as exc:  # noqa: BLE001 -- settled, then re-raised
                error = exc
            with self._shield_writes():
                record = await self._settle_create(record, remote, error, log)
            # A caller cancelled meanwhile gets its cancellation here (and the
            # session closed, below); the others need no trip round the loop.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            # The caller gave up. Each attempt ran shielded, so we know what the
            # service made: record it, then close it, since nobody holds it.
            with self._shielded():
                await self._abandon_create(record, attempts, log)
            raise
        if error is not None:
            raise error
        self._track(record)
        self._emit(EventKind.CREATED, provider=slot.name, session=record)
        return record

    async def _locate(self, slot: _Slot, record: Session) -> RemoteSession | None:
        """
        Find the remote session of a record whose create answer was lost.

        By tether's tag where the service keeps it (``find``), else in the
        service's list: tagged with the record's id, or the only unclaimed
        session the provider :meth:`~tether.abc.Provider.matches` to it.
        """
        provider = slot.provider
        budget = _retry.AttemptBudget(total=self._retry.attempts)
        if provider.capabilities.find:
            return await self._call(
                slot,
                lambda: provider.find(record.id),
                operation="find",
                budget=budget,
                session_id=record.id,
            )
        listed = await self._call(
            slot, provider.list, operation="list", budget=budget, session_id=record.id
        )
        return await self._match_listed(slot, record, listed)

    async def _match_listed(
        self, slot: _Slot, record: Session, listed: Sequence[RemoteSession]
    ) -> RemoteSession | None:
        for remote in listed:
            if remote.tether_id == record.id:
                return remote
        claimed = {
            r.remote_id
            for r in await self._store.list(provider=slot.name)
            if r.remote_id
        }
        candidates = [
            r
            for r in listed
            if r.tether_id is None
            and r.id not in claimed
            and slot.provider.matches(record, r)
        ]
        return candidates[0] if len(candidates) == 1 else None

    async def _abandon_create(
        self, record: Session, attempts: _CreateAttempts, log: Any
    ) -> None:
        current = await self._current(record.id)
        if current.state is SessionState.CREATING:
            if attempts.created is not None:
                current = await self._settle_create(
                    current, attempts.created, None, log
                )
            elif attempts.maybe_created and (
                self._slot(record.provider).provider.capabilities.find
                or self._slot(record.provider).provider.capabilities.list
            ):
                # The service may have it: look, and settle either way.
                with contextlib.suppress(TetherError):
                    found = await self._locate(self._slot(record.provider), current)
                    current = await self._settle_create(
                        current,
                        found,
                        None
                        if found is not None
                        else _CancelledCreateError(
                            "cancelled; the service has no such session"
                        ),
                        log,
                    )
                if not current.state.is_live or current.state is SessionState.CREATING:
                    return
            elif attempts.maybe_created:
                # The service may have it: keep the intent for reconcile.
                await self._settle_create(
                    current,
                    None,
                    OutcomeUnknownError(
                        "cancelled while the outcome was unknown",
                        provider=record.provider,
                        operation="create",
                    ),
                    log,
                )
                return
            else:
                await self._settle_create(
                    current,
                    None,
                    _CancelledCreateError("cancelled before the service created it"),
                    log,
                )
                return
        if current.state.is_live:
            with contextlib.suppress(TetherError):
                await self._close_by_id(record.id)

    async def _create_remote(
        self,
        slot: _Slot,
        request: CreateRequest,
        budget: _retry.AttemptBudget,
        attempts: _CreateAttempts,
    ) -> RemoteSession:
        provider = slot.provider

        async def attempt() -> RemoteSession:
            # Each attempt is shielded and bounded: a caller cancelled half-way
            # must not leave a remote session that nobody tracks. Between
            # attempts (while backing off) cancellation is delivered.
            with self._shielded():
                try:
                    created = await provider.create(request)
                except OutcomeUnknownError:
                    attempts.maybe_created = True
                    raise
                attempts.created = created
                return created
            attempts.maybe_created = True
            msg = f"{slot.name} did not finish creating within {self._shield_timeout}s"
            raise OutcomeUnknownError(
                msg,
                provider=slot.name,
                operation="create",
                session_id=request.tether_id,
            )

        while True:
            try:
                return await self._call(
                    slot,
                    attempt,
                    operation="create",
                    budget=budget,
                    idempotent=False,
                    session_id=request.tether_id,
                )
            except OutcomeUnknownError:
                caps = provider.capabilities
                if not (caps.find or caps.list) or budget.exhausted:
                    raise
                # The service may have made it: ask before trying again.
                found = await self._locate(
                    slot,
                    Session(
                        id=request.tether_id,
                        provider=slot.name,
                        state=SessionState.CREATING,
                        params=request.params,
                        labels=request.labels,
                    ),
                )
                if found is not None:
                    attempts.created = found
                    logger.info(
                        EVENT_SESSION_ADOPTED,
                        provider=slot.name,
                        session_id=request.tether_id,
                        remote_id=found.id,
                    )
                    return found
                attempts.maybe_created = False

    def _deadline(self, record: Session, remote: RemoteSession) -> datetime | None:
        """
        The session's deadline: the service's, else tether's own from its lifetime.

        A service that ends sessions by itself (server TTL) but cannot say when
        yet (a sandbox VM's lifetime starts with the VM) gets no tether deadline:
        pings learn the real one. Guessing would close it early.
        """
        if remote.expires_at is not None or record.lifetime is None:
            return remote.expires_at
        slot = self._slots.get(record.provider)
        if slot is not None and slot.provider.capabilities.server_ttl:
            return None
        return record.created_at + timedelta(seconds=record.lifetime)

    async def _settle_create(
        self,
        record: Session,
        remote: RemoteSession | None,
        error: BaseException | None,
        log: Any,
    ) -> Session:
        if remote is not None:
            expires = self._deadline(record, remote)
            state = remote.state if remote.state.is_live else SessionState.ACTIVE
            if state is SessionState.CREATING:
                state = SessionState.ACTIVE
            new = record.transition(
                state,
                remote_id=remote.id,
                raw_state=remote.raw_state,
                expires_at=expires,
                data=remote.data,
            )
            stored = await self._store.update(new)
            log.info(
                EVENT_SESSION_CREATED,
                remote_id=remote.id,
                expires_at=expires.isoformat() if expires else None,
            )
            return stored
        if isinstance(error, OutcomeUnknownError):
            log.warning(EVENT_SESSION_OUTCOME_UNKNOWN, detail=str(error))
            return await self._store.update(
                record.evolve(error=f"outcome unknown: {error}")
            )
        failed = record.transition(
            SessionState.FAILED, error=f"{type(error).__name__}: {error}"
        )
        stored = await self._store.update(failed)
        self._after_write(record, stored)
        self._emit(
            EventKind.CREATE_FAILED,
            provider=record.provider,
            session=stored,
            previous=SessionState.CREATING,
            detail=stored.error,
        )
        log.warning(
            EVENT_SESSION_CREATE_FAILED,
            error=type(error).__name__,
            status_code=getattr(error, "status_code", None),
        )
        return stored

    @contextlib.asynccontextmanager
    async def session(
        self,
        provider: str | FailoverPolicy,
        *,
        labels: Mapping[str, str] | None = None,
        lifetime: float | timedelta | None = None,
        keepalive: bool = False,
        **params: Any,
    ) -> AsyncIterator[Session]:
        """
        Create a session for the block, and close it when the block ends.

        The close is shielded: it happens on error and on cancellation too.
        Takes the same arguments as :meth:`create`.
        """
        created = await self.create(
            provider, labels=labels, lifetime=lifetime, keepalive=keepalive, **params
        )
        try:
            yield created
        except BaseException:
            # The block's own error wins; a failed close stays on record
            # (CLOSING) for a later close or reconcile, and is logged.
            with (
                self._shielded(),
                contextlib.suppress(TetherError),
            ):
                await self._close_by_id(created.id)
            raise
        with self._shielded():
            await self._close_by_id(created.id)

    @_instrumented("ping")
    async def ping(self, session: Session | str) -> Health:
        """
        Ask the service how the session is now, and update its state.

        A failed ping (after retries) returns a ``DEGRADED`` health and counts
        towards LOST; a service that says the session is gone makes it LOST at
        once.

        Raises:
            SessionEndedError: The session has ended.
            PermanentProviderError: The service refused the ping (e.g. auth).
        """
        self._check_open()
        record = await self._current(session)
        record.ensure_usable()
        slot = self._slot(record.provider)
        health = await self._ping_once(slot, record, retry=True)
        self._reschedule_ping(record.id, slot)
        return health

    def _reschedule_ping(self, session_id: str, slot: _Slot) -> None:
        if self._health.enabled and session_id in self._tracked:
            self._schedule(
                "ping",
                session_id,
                self._clock.time() + self._jittered(slot.ping_interval),
            )

    async def _background_ping(self, session_id: str) -> None:
        record = await self._store.get(session_id)
        if (
            record is None
            or not record.state.is_live
            or session_id not in self._tracked
        ):
            return
        if record.state is SessionState.CREATING:
            self._reschedule_ping(session_id, self._slot(record.provider))
            return
        slot = self._slot(record.provider)
        try:
            await self._ping_once(slot, record, retry=False)
        except ProviderError as exc:
            logger.warning(
                "tether.session.ping_refused",
                provider=record.provider,
                session_id=session_id,
                error=type(exc).__name__,
            )
        tracked = self._tracked.get(session_id)
        if tracked is not None and tracked.state.is_live:
            self._reschedule_ping(session_id, slot)

    async def _ping_once(self, slot: _Slot, record: Session, *, retry: bool) -> Health:
        started = self._clock.time()
        tracked = self._tracked.get(record.id)
        try:
            health = await self._call(
                slot,
                lambda: slot.provider.ping(record),
                operation="ping",
                budget=None if retry else _retry.AttemptBudget(total=1),
                session_id=record.id,
            )
        except RemoteNotFoundError as exc:
            health = Health(
                status=HealthStatus.GONE, detail=str(exc), checked_at=self._now()
            )
        except TransientProviderError as exc:
            health = Health(
                status=HealthStatus.DEGRADED,
                detail=f"ping failed: {type(exc).__name__}: {exc}",
                checked_at=self._now(),
            )
            failures = (tracked.failures if tracked else 0) + 1
            if tracked is not None:
                tracked.failures = failures
                tracked.last_ok = health.ok
                tracked.last_ping_at = self._clock.time()
            if failures >= self._health.failures_before_lost:
                await self._mark_lost(
                    record.id, f"{failures} pings failed in a row: {exc}"
                )
            else:
                await self._mark_degraded(record.id, health)
            return health
        now = self._clock.time()
        health = stamp_health(
            health, latency=now - started, checked_at=to_datetime(now)
        )
        if tracked is not None:
            tracked.last_ok = ok = health.status is HealthStatus.ALIVE
            tracked.last_ping_at = now
            if ok:
                tracked.failures = 0
        await self._apply_health(record.id, health, known=record)
        return health

    async def _apply_health(
        self, session_id: str, health: Health, *, known: Session | None = None
    ) -> None:
        if health.status is HealthStatus.GONE:
            await self._mark_lost(
                session_id,
                health.detail or "the service no longer has it",
                raw_state=health.raw_state,
            )
            return
        if health.status is HealthStatus.EXPIRED:
            await self._expire(session_id, already_gone=True)
            return
        if health.status is HealthStatus.DEGRADED:
            await self._mark_degraded(session_id, health)
            return

        seen: list[Session] = []

        def alive(current: Session) -> Session | None:
            seen.append(current)
            if not current.state.is_live or current.state is SessionState.CREATING:
                return None
            data = current.data
            if any(data.get(k, _MISSING) != v for k, v in health.data.items()):
                data = {**data, **health.data}
            raw_state = current.raw_state
            if health.raw_state is not None:
                raw_state = health.raw_state
            expires_at = current.expires_at
            if health.expires_at is not None:
                expires_at = health.expires_at
            if current.state is SessionState.DEGRADED:
                return current.transition(
                    SessionState.ACTIVE,
                    data=data,
                    raw_state=raw_state,
                    expires_at=expires_at,
                )
            if (
                data is current.data
                and raw_state == current.raw_state
                and expires_at == current.expires_at
            ):
                return None  # nothing new: no write (most pings)
            return current.evolve(data=data, raw_state=raw_state, expires_at=expires_at)

        after = await self._mutate(session_id, alive, known=known)
        before = seen[-1]
        if before.state is SessionState.DEGRADED and after.state is SessionState.ACTIVE:
            logger.info(
                EVENT_SESSION_RECOVERED, provider=after.provider, session_id=session_id
            )
            self._emit(
                EventKind.RECOVERED,
                provider=after.provider,
                session=after,
                previous=SessionState.DEGRADED,
            )
        else:
            logger.debug(
                EVENT_SESSION_PINGED,
                provider=after.provider,
                session_id=session_id,
                status=health.status.value,
            )
            self._emit(
                EventKind.PINGED,
                provider=after.provider,
                session=after,
                detail=health.status.value,
                data={"latency": health.latency},
            )
        if after.expires_at != before.expires_at:
            self._plan_expiry(after)

    def _plan_expiry(self, session: Session) -> None:
        if session.id in self._tracked and session.expires_at is not None:
            self._schedule("expire", session.id, session.expires_at.timestamp())

    async def _mark_degraded(self, session_id: str, health: Health) -> None:
        def degrade(current: Session) -> Session | None:
            if current.state is not SessionState.ACTIVE:
                return None
            return current.transition(
                SessionState.DEGRADED, raw_state=health.raw_state, error=health.detail
            )

        before = await self._current(session_id)
        after = await self._mutate(session_id, degrade)
        if before.state is not after.state:
            logger.warning(
                EVENT_SESSION_DEGRADED,
                provider=after.provider,
                session_id=session_id,
                detail=health.detail,
            )
            self._emit(
                EventKind.DEGRADED,
                provider=after.provider,
                session=after,
                previous=before.state,
                detail=health.detail,
            )

    async def _mark_lost(
        self, session_id: str, reason: str, raw_state: str | None = None
    ) -> None:
        def lose(current: Session) -> Session | None:
            if not current.state.is_live:
                return None
            return current.transition(
                SessionState.LOST, error=reason, raw_state=raw_state
            )

        before = await self._current(session_id)
        tracked = self._tracked.get(session_id)
        after = await self._mutate(session_id, lose)
        if before.state is after.state:
            return
        logger.warning(
            EVENT_SESSION_LOST,
            provider=after.provider,
            session_id=session_id,
            reason=reason,
        )
        if tracked is not None:
            # The service may hold it still (a partition, not a death): closed
            # on exit with the others, best effort.
            self._lost.add(session_id)
        self._emit(
            EventKind.LOST,
            provider=after.provider,
            session=after,
            previous=before.state,
            detail=reason,
        )
        self._untrack(session_id)
        if (
            tracked is not None
            and tracked.failover is not None
            and tracked.failover.recreate_lost
        ):
            await self._recreate(after, tracked)

    async def _recreate(self, lost: Session, tracked: _Tracked) -> None:
        policy = tracked.failover
        assert policy is not None  # noqa: S101
        plans = []
        for candidate in policy.candidates:
            slot = self._slot(candidate.provider)
            parsed = slot.provider.parse_create(candidate.params)
            plans.append(
                (
                    candidate,
                    slot,
                    parsed,
                    slot.provider.lifetime_for(lost.lifetime, parsed),
                )
            )
        try:
            new = await self._create_failover(
                plans,
                policy,
                self._budget(),
                policy.attempts_per_candidate,
                dict(lost.labels),
                keepalive=lost.keepalive,
                exclude=tracked.candidate,
            )
        except TetherError as exc:
            logger.warning(
                EVENT_FAILOVER,
                provider=lost.provider,
                previous=lost.id,
                next=None,
                cause=type(exc).__name__,
            )
            return
        await self._mutate(
            lost.id, lambda s: s.evolve(data={**s.data, "replaced_by": new.id})
        )
        logger.warning(
            EVENT_FAILOVER, provider=new.provider, previous=lost.id, next=new.id
        )
        self._emit(
            EventKind.FAILOVER,
            provider=new.provider,
            session=new,
            detail=f"{lost.id} was lost; {new.id} replaces it",
            data={"old": lost.id, "new": new.id},
        )

    @_instrumented("update")
    async def update(self, /, session: Session | str, **changes: Any) -> Session:
        """
        Change a session in place, and return it.

        Raises:
            NotSupportedError: The service cannot (nothing was sent).
            InvalidParameterError: Bad changes (nothing was sent).
            SessionEndedError: The session has ended.
        """
        self._check_open()
        record = await self._current(session)
        record.ensure_usable()
        slot = self._slot(record.provider)
        if not slot.provider.capabilities.update:
            raise slot.provider.not_supported("update")
        parsed = slot.provider.parse_update(changes)
        remote = await self._call(
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

        updated = await self._mutate(record.id, apply)
        logger.info(
            EVENT_SESSION_UPDATED,
            provider=record.provider,
            session_id=record.id,
            fields=sorted(parsed),
        )
        self._emit(EventKind.UPDATED, provider=record.provider, session=updated)
        return updated

    @_instrumented("renew")
    async def renew(
        self, session: Session | str, *, lifetime: float | timedelta | None = None
    ) -> Session:
        """
        Extend a session's lifetime by *lifetime* seconds from now (default: its own).

        Never shortens a lifetime. For providers without a server-side lifetime,
        the deadline is tether's own and is moved here.

        Raises:
            NotSupportedError: The service has a lifetime it cannot extend.
        """
        self._check_open()
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
        record = await self._current(session)
        record.ensure_usable()
        slot = self._slot(record.provider)
        caps = slot.provider.capabilities
        seconds = lifetime if lifetime is not None else record.lifetime
        if seconds is None or seconds <= 0:
            msg = "renew needs a positive lifetime (the session has none of its own)"
            raise InvalidParameterError(msg, field="lifetime", value=lifetime)
        if caps.renew:
            remote = await self._call(
                slot,
                lambda: slot.provider.renew(record, seconds),
                operation="renew",
                session_id=record.id,
            )
            new_deadline = remote.expires_at or self._now() + timedelta(seconds=seconds)
        elif not caps.server_ttl:
            new_deadline = self._now() + timedelta(seconds=seconds)
        else:
            raise slot.provider.not_supported("renew")

        def extend(current: Session) -> Session | None:
            current.ensure_usable()
            deadline = new_deadline
            if current.expires_at is not None and current.expires_at > deadline:
                deadline = current.expires_at
            return current.evolve(expires_at=deadline)

        renewed = await self._mutate(record.id, extend)
        logger.info(
            EVENT_SESSION_RENEWED,
            provider=record.provider,
            session_id=record.id,
            expires_at=renewed.expires_at.isoformat() if renewed.expires_at else None,
        )
        self._emit(EventKind.RENEWED, provider=record.provider, session=renewed)
        self._plan(renewed)
        return renewed

    async def _keepalive(self, session_id: str) -> None:
        record = await self._store.get(session_id)
        if record is None or not record.state.is_live or record.expires_at is None:
            return
        hard_deadline = record.expires_at.timestamp()
        delay = 0.5
        while self._clock.time() < hard_deadline:
            try:
                await self.renew(session_id)
            except SessionEndedError:
                return
            except NotSupportedError:
                return
            except TetherError as exc:
                logger.warning(
                    "tether.session.renew_failed",
                    session_id=session_id,
                    error=type(exc).__name__,
                )
                left = hard_deadline - self._clock.time()
                await self._clock.sleep(max(0.0, min(delay, left / 2)))
                delay = min(delay * 2, 30.0)
                continue
            return

    async def _expire(self, session_id: str, *, already_gone: bool = False) -> None:
        record = await self._store.get(session_id)
        if record is None or not record.state.is_live:
            return
        if not already_gone:
            if (
                record.expires_at is None
                or record.expires_at.timestamp() > self._clock.time()
            ):
                # The deadline moved (renewed) since this was scheduled.
                self._plan_expiry(record) if record.expires_at else None
                return
        slot = self._slot(record.provider)
        previous = record.state
        if not already_gone:
            closing = await self._mutate(
                session_id,
                lambda s: (
                    s.transition(SessionState.CLOSING, raw_state=s.raw_state)
                    if s.state.is_live
                    else None
                ),
            )
            if closing.state is not SessionState.CLOSING:
                return
            try:
                with self._shielded():
                    await self._call(
                        slot,
                        lambda: slot.provider.close(closing),
                        operation="close",
                        session_id=session_id,
                    )
            except RemoteNotFoundError:
                pass
            except TetherError as exc:
                logger.warning(
                    EVENT_SESSION_CLOSE_FAILED,
                    provider=record.provider,
                    session_id=session_id,
                    error=type(exc).__name__,
                )
                if not slot.provider.capabilities.server_ttl:
                    # It may still run and bill: keep it CLOSING, try again soon.
                    self._schedule("expire", session_id, self._clock.time() + 5.0)
                    return
        expired = await self._mutate(
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
            self._emit(
                EventKind.EXPIRED,
                provider=expired.provider,
                session=expired,
                previous=previous,
            )

    @_instrumented("close")
    async def close(self, session: Session | str) -> Session:
        """
        Close a session on its service, and return it CLOSED.

        Idempotent: closing a closed, expired or failed session returns it as it
        is. Shielded and bounded: cancelling the caller does not abandon a close
        half-way.

        Raises:
            ProviderError: The service could not close it; the record stays
                CLOSING, for a later close or :meth:`reconcile`.
        """
        self._check_open()
        record = await self._current(session)
        with self._shielded():
            return await self._close_by_id(record.id, record)
        msg = f"closing {record.id} did not finish within {self._shield_timeout}s"
        raise ProviderUnavailableError(
            msg, provider=record.provider, operation="close", session_id=record.id
        )

    async def _close_by_id(
        self, session_id: str, record: Session | None = None
    ) -> Session:
        if record is None:
            record = await self._current(session_id)
        if record.state in (
            SessionState.CLOSED,
            SessionState.EXPIRED,
            SessionState.FAILED,
        ):
            self._untrack(session_id)
            return record
        slot = self._slot(record.provider)
        previous = record.state
        closing = await self._mutate(
            session_id,
            lambda s: (
                s.transition(SessionState.CLOSING)
                if s.state
                in (
                    SessionState.CREATING,
                    SessionState.ACTIVE,
                    SessionState.DEGRADED,
                    SessionState.LOST,
                )
                else None
            ),
            known=record,
        )
        if closing.state is not SessionState.CLOSING:
            return closing
        log = logger.bind(provider=record.provider, session_id=session_id)
        log.debug(EVENT_SESSION_CLOSING)
        target = closing
        if target.remote_id is None:
            # Created with an unknown outcome: find it, if the service can.
            caps = slot.provider.capabilities
            if caps.find or caps.list:
                found = await self._locate(slot, closing)
                if found is not None:
                    target = closing.evolve(remote_id=found.id)
        if target.remote_id is not None:
            try:
                await self._call(
                    slot,
                    lambda: slot.provider.close(target),
                    operation="close",
                    session_id=session_id,
                )
            except RemoteNotFoundError:
                pass
            except TetherError as exc:
                log.warning(EVENT_SESSION_CLOSE_FAILED, error=type(exc).__name__)
                raise
        closed = await self._mutate(
            session_id,
            lambda s: (
                s.transition(SessionState.CLOSED, remote_id=target.remote_id)
                if s.state is SessionState.CLOSING
                else None
            ),
            known=closing,
        )
        self._untrack(session_id)
        log.info(EVENT_SESSION_CLOSED)
        self._emit(
            EventKind.CLOSED,
            provider=record.provider,
            session=closed,
            previous=previous,
        )
        return closed

    # -- reconciling -------------------------------------------------------------

    @_instrumented("reconcile")
    async def reconcile(
        self,
        *,
        provider: str | None = None,
        dry_run: bool = False,
        orphans: OrphanPolicy = "close",
        grace: float = 300.0,
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
                left alone, since its create may still be under way.

        Returns:
            What was found and done.
        """
        self._check_open()
        if orphans not in ("close", "adopt", "report"):
            msg = f"orphans must be 'close', 'adopt' or 'report', not {orphans!r}"
            raise ConfigError(msg)
        records = await self._store.list(provider=provider)
        if provider is not None:
            names = {provider}
        else:
            # Every provider with records, configured, or in use here.
            names = (
                {r.provider for r in records}
                | set(self._config)
                | set(self._slots)
                | self._env_configured()
            )
        actions: list[ReconcileAction] = []
        for name in sorted(names):
            mine = [r for r in records if r.provider == name]
            if provider is None:
                try:
                    self._slot(name)
                except (ProviderNotFoundError, ProviderLoadError, ConfigError) as exc:
                    # Another process's provider: report it, reconcile the rest.
                    actions.append(
                        ReconcileAction(
                            kind="skipped",
                            provider=name,
                            session_id=None,
                            remote_id=None,
                            detail=f"{len(mine)} record(s); {type(exc).__name__}: {exc}",
                        )
                    )
                    continue
            actions.extend(
                await self._reconcile_provider(
                    name, mine, dry_run=dry_run, orphans=orphans, grace=grace
                )
            )
        report = ReconcileReport(dry_run=dry_run, actions=tuple(actions))
        logger.info(
            "tether.reconciled",
            dry_run=dry_run,
            **{kind: n for kind, n in report.counts.items() if n},
        )
        return report

    def _env_configured(self) -> set[str]:
        """
        Installed providers that ``TETHER_<PROVIDER>_<FIELD>`` variables configure.
        """
        found = set()
        for name in self._registry.names():
            prefix = f"TETHER_{name.upper().replace('-', '_')}_"
            if any(key.startswith(prefix) for key in self._environ):
                found.add(name)
        return found

    async def _reconcile_provider(
        self,
        name: str,
        records: list[Session],
        *,
        dry_run: bool,
        orphans: OrphanPolicy,
        grace: float,
    ) -> list[ReconcileAction]:
        slot = self._slot(name)
        caps = slot.provider.capabilities
        now = self._clock.time()
        actions: list[ReconcileAction] = []

        def act(
            kind: str, record: Session | None, remote_id: str | None, detail: str
        ) -> None:
            actions.append(
                ReconcileAction(
                    kind=kind,
                    provider=name,
                    session_id=record.id if record else None,
                    remote_id=remote_id,
                    detail=detail,
                )
            )

        remote_by_id: dict[str, RemoteSession] | None = None
        if caps.list:
            listed = await self._call(slot, slot.provider.list, operation="list")
            remote_by_id = {r.id: r for r in listed}

        async def lookup(record: Session) -> RemoteSession | bool | None:
            """
            The remote session of *record*, None when gone, False when unknowable.
            """
            if remote_by_id is not None:
                if record.remote_id is not None:
                    listed_remote = remote_by_id.get(record.remote_id)
                    if listed_remote is not None and not listed_remote.state.is_live:
                        return None  # listed, but dead on the service
                    return listed_remote
                return await self._match_listed(
                    slot, record, list(remote_by_id.values())
                )
            if record.remote_id is not None and caps.get:
                return await self._call(
                    slot,
                    lambda: slot.provider.get(record),
                    operation="get",
                    session_id=record.id,
                )
            if record.remote_id is None and caps.find:
                return await self._call(
                    slot,
                    lambda: slot.provider.find(record.id),
                    operation="find",
                    session_id=record.id,
                )
            return False

        for record in records:
            state = record.state
            if state in (
                SessionState.CLOSED,
                SessionState.EXPIRED,
                SessionState.FAILED,
            ):
                continue
            age = now - record.created_at.timestamp()
            remote = await lookup(record)
            if remote is False:
                if state is SessionState.CREATING:
                    act(
                        "unresolved",
                        record,
                        None,
                        "the service cannot say whether it exists",
                    )
                continue
            if state is SessionState.CREATING:
                if isinstance(remote, RemoteSession):
                    act(
                        "adopted",
                        record,
                        remote.id,
                        "created before the answer was lost",
                    )
                    if not dry_run:
                        await self._adopt(record, remote)
                elif age >= grace:
                    act("failed", record, None, "never created on the service")
                    if not dry_run:
                        await self._mutate(
                            record.id,
                            lambda s: (
                                s.transition(
                                    SessionState.FAILED,
                                    error="reconcile: never created",
                                )
                                if s.state is SessionState.CREATING
                                else None
                            ),
                        )
                continue
            if state is SessionState.CLOSING or (
                state is SessionState.LOST and isinstance(remote, RemoteSession)
            ):
                act(
                    "closed",
                    record,
                    record.remote_id,
                    f"was {state.value}; closed again",
                )
                if not dry_run:
                    with contextlib.suppress(TetherError):
                        await self._close_by_id(record.id)
                continue
            if state.is_live and remote is None:
                act("lost", record, record.remote_id, "the service no longer has it")
                if not dry_run:
                    await self._mark_lost(
                        record.id, "reconcile: the service no longer has it"
                    )

        if remote_by_id is not None:
            by_remote = {r.remote_id: r for r in records if r.remote_id}
            by_id = {r.id: r for r in records}
            for remote in remote_by_id.values():
                owner: Session | None = by_remote.get(remote.id)
                if owner is None and remote.tether_id is not None:
                    owner = by_id.get(remote.tether_id)
                if owner is not None and not owner.state.is_terminal:
                    continue  # live, or handled above
                if owner is not None and owner.state is SessionState.LOST:
                    continue  # closed above
                if owner is None and remote.tether_id is None:
                    act("foreign", None, remote.id, "not made by tether; left alone")
                    continue
                why = "its record ended" if owner is not None else "no record of it"
                if owner is None and grace > 0:
                    # Perhaps another deployment's, or a create racing us: only
                    # sessions known to be older than the grace period go.
                    if remote.created_at is None:
                        act(
                            "orphan",
                            None,
                            remote.id,
                            f"tagged by tether, {why}; age unknown",
                        )
                        continue
                    if now - remote.created_at.timestamp() < grace:
                        continue
                if orphans == "adopt" and owner is None:
                    act("adopted", None, remote.id, f"tagged by tether, {why}")
                    if not dry_run:
                        await self._adopt_orphan(name, remote)
                    continue
                kind = "orphan" if orphans == "report" else "closed"
                act(kind, owner, remote.id, f"tagged by tether, but {why}")
                if dry_run or orphans == "report":
                    continue
                target = Session(
                    id=remote.tether_id or remote.id,
                    provider=name,
                    state=SessionState.LOST,
                    remote_id=remote.id,
                    data=remote.data,
                )
                with contextlib.suppress(RemoteNotFoundError):
                    await self._call(
                        slot,
                        functools.partial(slot.provider.close, target),
                        operation="close",
                        session_id=target.id,
                    )
        return actions

    async def _adopt(self, record: Session, remote: RemoteSession) -> None:
        def adopt(current: Session) -> Session | None:
            if current.state is not SessionState.CREATING:
                return None
            expires = self._deadline(current, remote)
            return current.transition(
                SessionState.ACTIVE,
                remote_id=remote.id,
                raw_state=remote.raw_state,
                expires_at=expires,
                data=remote.data,
                error=None,
            )

        adopted = await self._mutate(record.id, adopt)
        logger.info(
            EVENT_SESSION_ADOPTED,
            provider=record.provider,
            session_id=record.id,
            remote_id=remote.id,
        )
        self._track(adopted)

    async def _adopt_orphan(self, name: str, remote: RemoteSession) -> None:
        now = self._now()
        record = Session(
            id=remote.tether_id or uuid.uuid4().hex,
            provider=name,
            state=SessionState.CREATING,
            created_at=now,
            updated_at=now,
        )
        stored = await self._store.insert(record)
        await self._adopt(stored, remote)

    # -- looking up ------------------------------------------------------------

    async def get(self, session_id: str) -> Session:
        """
        The current record of a session.

        Raises:
            SessionNotFoundError: tether has no record of it.
        """
        self._check_open()
        return await self._current(session_id)

    @_instrumented("attach")
    async def attach(self, session_id: str) -> Session:
        """
        Take over watching a session recorded earlier (this process or another).

        The session joins this manager's background pinging and expiry, and its
        ``on_exit`` policy.

        Raises:
            SessionNotFoundError: No such record.
            SessionEndedError: It has ended.
        """
        self._check_open()
        record = await self._current(session_id)
        record.ensure_usable()
        self._slot(record.provider)
        self._track(record)
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
        self._check_open()
        states: Sequence[SessionState] | None
        if state is None:
            states = None
        elif isinstance(state, SessionState):
            states = [state]
        else:
            states = list(state)
        return await self._store.list(provider=provider, states=states, labels=labels)

    @contextlib.asynccontextmanager
    async def scope(self, session: Session | str) -> AsyncIterator[anyio.CancelScope]:
        """
        Run work that is cancelled the moment the session ends.

        Like etcd's ``Session.Done()``: when the session becomes LOST, EXPIRED
        or CLOSED, the block is cancelled and
        :class:`~tether.exceptions.SessionEndedError` is raised from it.
        """
        self._check_open()
        record = await self._current(session)
        record.ensure_usable()
        if record.id not in self._tracked:
            self._track(record)
        tracked = self._tracked[record.id]
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
            (await self._current(record.id)).ensure_usable()

    def snapshot(self) -> ManagerSnapshot:
        """
        Per-provider health and breakers, and per-session last ping and time to expiry.

        Reads only what this manager holds in memory.
        """
        now = self._clock.time()
        sessions = []
        counts: dict[str, dict[str, int]] = {name: {} for name in self._slots}
        for tracked in self._tracked.values():
            sessions.append(
                SessionSnapshot(
                    id=tracked.session_id,
                    provider=tracked.provider,
                    state=tracked.state,
                    last_ping_at=to_datetime(tracked.last_ping_at)
                    if tracked.last_ping_at
                    else None,
                    last_ping_ok=tracked.last_ok,
                    consecutive_failures=tracked.failures,
                    seconds_to_expiry=(
                        tracked.expires_at - now
                        if tracked.expires_at is not None
                        else None
                    ),
                )
            )
            state_counts = counts.setdefault(tracked.provider, {})
            key = sessions[-1].state.value
            state_counts[key] = state_counts.get(key, 0) + 1
        return ManagerSnapshot(
            at=to_datetime(now),
            providers={
                name: ProviderSnapshot(
                    name=name,
                    breaker=slot.breaker.state,
                    breaker_failures=slot.breaker.failures,
                    ping_interval=slot.ping_interval,
                    sessions=counts.get(name, {}),
                    transport=slot.transport,
                )
                for name, slot in self._slots.items()
            },
            breakers={key: b.state for key, b in self._breakers.items()},
            sessions=tuple(sessions),
        )
