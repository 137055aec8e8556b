"""
Warm pools: sessions created ahead, handed out on demand, and handed back.

A pool owns a set of sessions of one provider (or failover policy) and one
parameter set. Its idle sessions are ordinary tracked sessions (pinged, expired
and closed on exit like any other) labelled ``tether.pool=<name>``, so another
process sees them in the store and :meth:`SessionManager.reconcile` closes
those a crashed manager left behind.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio
import anyio.abc
import attrs

from tether._config import FailoverPolicy
from tether._events import EventKind
from tether._handle import SessionHandle
from tether._lifecycle.creation import check_labels, positive_seconds
from tether._lifecycle.runtime import ManagerState, ManagerStateError
from tether._log import logger
from tether._session import HealthStatus, Session, SessionState
from tether._store import count_live
from tether.exceptions import ConfigError, PoolExhaustedError, TetherError


if TYPE_CHECKING:
    from tether._lifecycle.bus import EventBus
    from tether._lifecycle.calls import Calls
    from tether._lifecycle.closing import Closer
    from tether._lifecycle.creation import Creator
    from tether._lifecycle.health import HealthMonitor
    from tether._lifecycle.operations import Operations
    from tether._lifecycle.records import Records
    from tether._lifecycle.runtime import Runtime
    from tether._lifecycle.slots import Slots


__all__ = [
    "POOL_LABEL",
    "POOL_OWNER_LABEL",
    "Pool",
    "PoolSnapshot",
    "Pools",
    "owner_key",
]

H = TypeVar("H", bound=SessionHandle[Any])
T = TypeVar("T")

#: The label every pooled session carries; its value is the pool's name.
POOL_LABEL: Final = "tether.pool"

#: The label naming the manager (its owner name) whose pool made the session.
POOL_OWNER_LABEL: Final = "tether.pool.owner"
#: The prefix of the lease a manager with pools holds while it lives: another
#: manager's reconcile closes a pooled session only once its owner's lapsed.
OWNER_KEY_PREFIX: Final = "tether.owner:"

EVENT_POOL_REFILL_FAILED: Final = "tether.pool.refill_failed"
EVENT_POOL_RESET_FAILED: Final = "tether.pool.reset_failed"
EVENT_POOL_OWNER_TAKEN: Final = "tether.pool.owner_taken"
EVENT_POOL_OWNER_RENEW_FAILED: Final = "tether.pool.owner_renew_failed"

# Back-off between failed refills (seconds), doubling up to the cap.
_BACKOFF_MIN: Final = 0.1
_BACKOFF_MAX: Final = 5.0
# Seconds between sweeps of the idle set for sessions found unfit meanwhile.
_SWEEP: Final = 1.0
# The share of a session's lifetime under which an idle one is "near its
# deadline", unless the pool says otherwise.
_NEAR_DEADLINE: Final = 0.1


@attrs.frozen(kw_only=True)
class PoolSnapshot:
    """
    One pool's figures at one moment, from :meth:`Pool.snapshot`.

    Attributes:
        name: The pool's name (its sessions' ``tether.pool`` label).
        provider: The provider (or the first failover candidate).
        min_idle: The idle sessions it keeps ready.
        max_size: The most sessions it holds at once, in any state.
        idle: Sessions ready to hand out.
        in_use: Sessions handed out and not yet handed back.
        creating: Creates in flight (refills and callers').
        closing: Closes in flight (replaced or recycled sessions).
        waiting: Callers waiting for a session.
        acquired: Sessions handed out so far.
        refills: Sessions created for the idle set so far.
        replaced: Idle sessions found unfit and closed instead of handed out.
        recycled: Sessions handed back that were closed, not reused.
        reset: Used sessions handed back and reused (the provider reset
            them, or declares its sessions reusable).
        exhausted: Callers that got :class:`~tether.exceptions.PoolExhaustedError`.
    """

    name: str
    provider: str
    min_idle: int
    max_size: int
    idle: int
    in_use: int
    creating: int
    closing: int
    waiting: int
    acquired: int
    refills: int
    replaced: int
    recycled: int
    reset: int
    exhausted: int


@attrs.define
class _Idle:
    session_id: str
    #: Its deadline (the manager's clock), and the lifetime it was made with.
    expires_at: float | None
    span: float | None


def owner_key(owner: str) -> str:
    """
    The lease id that says a manager with pools (named *owner*) is alive.
    """
    return OWNER_KEY_PREFIX + owner


def owner_ttl(runtime: Runtime) -> float:
    """
    Seconds an owner's liveness lasts unrenewed.
    """
    return runtime.health.lease_ttl or 30.0


def pool_name(target: str | FailoverPolicy, params: Mapping[str, Any]) -> str:
    """
    The default name of a pool: its provider, and a digest of its parameters.
    """
    if isinstance(target, FailoverPolicy):
        first = target.candidates[0].provider
        spec: Any = [[c.provider, dict(c.params)] for c in target.candidates]
    else:
        first, spec = target, dict(params)
    if not spec and not isinstance(target, FailoverPolicy):
        return first
    digest = hashlib.sha256(
        json.dumps(spec, sort_keys=True, default=repr).encode()
    ).hexdigest()
    return f"{first}-{digest[:8]}"


class Pool(Generic[H]):
    """
    Sessions of one provider and parameter set, ready before anyone asks.

    Get one from :meth:`tether.SessionManager.pool`; do not instantiate
    directly. Hand out sessions with :meth:`acquire`::

        pool = manager.pool(SandboxProvider, vcpu_count=2, min_idle=2)
        async with pool.acquire() as sb:
            await sb.execute("print(1)")

    The pool keeps *min_idle* sessions idle in the background, never holds
    more than *max_size* (nor more than the credential's session limit
    allows), checks an idle session before handing it out (its state, its
    deadline, and by default a ping), and replaces one found unfit. A session
    handed back is reused when it is clean (no operation ran on it, the
    provider is :attr:`~tether.abc.Provider.reusable`, or its
    :meth:`~tether.abc.Provider.reset` says so); otherwise it is closed, and
    the pool makes another.
    """

    def __init__(
        self,
        *,
        pools: Pools,
        name: str,
        target: str | FailoverPolicy,
        provider: str,
        params: Mapping[str, Any],
        labels: Mapping[str, str],
        lifetime: float | None,
        min_idle: int,
        max_size: int,
        timeout: float,
        ping_on_acquire: bool,
        min_remaining: float | None,
    ) -> None:
        self._pools = pools
        self._runtime = pools.runtime
        self.name = name
        self.provider_name = provider
        self.min_idle = min_idle
        self.max_size = max_size
        self.timeout = timeout
        self.ping_on_acquire = ping_on_acquire
        self.min_remaining = min_remaining
        self._target = target
        self._params = dict(params)
        self._labels = {
            **labels,
            POOL_LABEL: name,
            POOL_OWNER_LABEL: pools.runtime.owner,
        }
        self._lifetime = lifetime
        self._idle: collections.deque[_Idle] = collections.deque()
        self._in_use: set[str] = set()
        self._checking = 0
        self._creating = 0
        self._refilling = 0
        self._closing = 0
        self._waiting = 0
        self._counts = collections.Counter[str]()
        self._changed = anyio.Event()
        self._closed = False
        self._refiller: anyio.CancelScope | None = None
        self._refiller_done = anyio.Event()
        #: When the idle set last fell short of min_idle (for refill lag).
        self._short_since: float | None = None
        # After failed refills: the current back-off, and when to try again.
        self._backoff = 0.0
        self._retry_at = 0.0
        # When the sweep next reads the records of idle sessions not tracked
        # here (anyio time).
        self._read_at = 0.0

    def __repr__(self) -> str:
        return (
            f"<Pool {self.name!r} idle={len(self._idle)} in_use={len(self._in_use)} "
            f"max_size={self.max_size}>"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot(self) -> PoolSnapshot:
        """
        The pool's figures now (no I/O).
        """
        c = self._counts
        return PoolSnapshot(
            name=self.name,
            provider=self.provider_name,
            min_idle=self.min_idle,
            max_size=self.max_size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            creating=self._creating + self._refilling,
            closing=self._closing,
            waiting=self._waiting,
            acquired=c["acquired"],
            refills=c["refills"],
            replaced=c["replaced"],
            recycled=c["recycled"],
            reset=c["reset"],
            exhausted=c["exhausted"],
        )

    def idle_ids(self) -> list[str]:
        """
        The ids of the idle sessions, oldest first (for tests and tools).
        """
        return [entry.session_id for entry in self._idle]

    def _size(self) -> int:
        return (
            len(self._idle)
            + len(self._in_use)
            + self._checking
            + self._creating
            + self._refilling
            + self._closing
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
        if len(self._idle) + self._refilling < self.min_idle:
            if self._short_since is None:
                self._short_since = anyio.current_time()
        else:
            self._short_since = None

    def _emit(
        self,
        kind: EventKind,
        *,
        session: Session | None = None,
        detail: str | None = None,
        **data: Any,
    ) -> None:
        self._pools.bus.emit(
            kind,
            provider=session.provider if session else self.provider_name,
            session=session,
            detail=detail,
            data={
                "pool": self.name,
                "idle": len(self._idle),
                "in_use": len(self._in_use),
                **data,
            },
        )

    def _check_usable(self) -> None:
        self._runtime.check_open()
        if self._closed:
            msg = f"pool {self.name!r} is closed"
            raise ManagerStateError(msg)

    # -- handing out -------------------------------------------------------

    async def wait_ready(self) -> None:
        """
        Wait until *min_idle* sessions are idle: a warm-up, e.g. before a
        service takes traffic. You own the deadline
        (``with anyio.fail_after(30):``); refills that fail are retried, with
        back-off, until then.

        Raises:
            ManagerStateError: The pool or its manager closed meanwhile.
        """
        while True:
            self._check_usable()
            changed = self._changed
            if len(self._idle) >= self.min_idle:
                return
            await changed.wait()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[H]:
        """
        A session for the block, handed back to the pool when the block ends.

        An idle session is checked first (state, deadline, a ping unless the
        pool was made with ``ping_on_acquire=False``); one found unfit is
        closed and the next is tried. With none idle, a session is created for
        the caller while the pool is below *max_size* (unless a refill under
        way will land first: then it waits for that); at *max_size*, the
        caller waits for one to be handed back, up to the pool's *timeout*.
        Your own deadline applies as everywhere (``with anyio.fail_after(5):``),
        and a cancelled acquire leaves nothing behind.

        Raises:
            PoolExhaustedError: No session came free within the pool's timeout.
            ProviderError: Creating a session for the caller failed.
            ManagerStateError: The pool or its manager is closed.
        """
        session = await self._checkout()
        state = _Use()
        try:
            yield self._handle(session, state)
        except BaseException:
            with self._runtime.shielded():
                await self._give_back(session.id, used=True, failed=True)
            raise
        with self._runtime.shielded():
            await self._give_back(session.id, used=state.used, failed=False)

    def _handle(self, session: Session, state: _Use) -> H:
        operations = self._pools.operations
        handle = operations.handle(session)

        async def operate(
            target: SessionHandle[Any],
            operation: str,
            call: Callable[[Session], Awaitable[Any]],
        ) -> Any:
            # Anything run on the session may leave state behind in it.
            state.used = True
            return await operations.run(target, operation, call)

        handle._operate = operate  # noqa: SLF001 -- the pool's own handle
        return handle  # type: ignore[return-value]

    async def _checkout(self) -> Session:
        started = anyio.current_time()
        while True:
            self._check_usable()
            if self._idle:
                entry = self._idle.popleft()
                self._checking += 1
                self._notify()
                try:
                    unfit = await self._unfit(entry)
                    record = None
                    if unfit is None:
                        record = await self._record(entry.session_id)
                except BaseException:
                    # Cancelled while checking: it goes back, to be checked
                    # again by the next caller; unless the pool closed
                    # meanwhile (its idle set already closed): then it goes.
                    if self._closed:
                        with self._runtime.shielded():
                            await self._close(entry.session_id)
                    else:
                        self._idle.appendleft(entry)
                    raise
                finally:
                    self._checking -= 1
                if record is not None:
                    await self._unless_closed(record.id)
                    self._in_use.add(record.id)
                    self._counts["acquired"] += 1
                    self._notify()
                    return record
                self._replace(entry.session_id, unfit or "its record is gone")
                continue
            if self._size() < self.max_size and (
                self._refilling <= self._waiting
                or anyio.current_time() >= started + self.timeout
            ):
                # No refill under way that another waiter has not claimed: a
                # create of the caller's own. (One under way lands sooner than
                # a create begun now, so the caller waits for it instead.)
                record = await self._create(refill=False)
                await self._unless_closed(record.id)
                self._in_use.add(record.id)
                self._counts["acquired"] += 1
                self._notify()
                return record
            await self._wait(started)

    async def _unless_closed(self, session_id: str) -> None:
        # The pool closed while the caller's session was checked or created:
        # nothing closes it later, so it is closed now.
        if self._closed:
            with self._runtime.shielded():
                await self._close(session_id)
            self._check_usable()

    async def _wait(self, started: float) -> None:
        changed = self._changed
        remaining = started + self.timeout - anyio.current_time()
        if remaining > 0:
            self._waiting += 1
            try:
                with anyio.move_on_after(remaining):
                    await changed.wait()
                    return
            finally:
                self._waiting -= 1
        if self._size() < self.max_size:
            return  # it waited for a refill in vain: it may create its own
        self._counts["exhausted"] += 1
        self._emit(EventKind.POOL_EXHAUSTED, detail=f"waited {self.timeout}s")
        msg = (
            f"pool {self.name!r}: all {self.max_size} sessions stayed in use "
            f"for {self.timeout}s"
        )
        raise PoolExhaustedError(
            msg,
            pool=self.name,
            provider=self.provider_name,
            max_size=self.max_size,
            waited=self.timeout,
        )

    async def _record(self, session_id: str) -> Session | None:
        try:
            record = await self._pools.records.current(session_id)
        except TetherError:
            return None
        return record if record.state is SessionState.ACTIVE else None

    async def _live(self, session_id: str) -> bool:
        tracked = self._runtime.tracked.get(session_id)
        if tracked is not None:
            return tracked.state is SessionState.ACTIVE
        return await self._record(session_id) is not None

    async def _unfit(self, entry: _Idle) -> str | None:
        """
        Why *entry* must not be handed out, or ``None`` when it is fit.
        """
        runtime = self._runtime
        stale = self._stale(entry)
        if stale is not None or not self.ping_on_acquire:
            return stale
        try:
            health = await self._pools.health.ping(entry.session_id)
        except TetherError as exc:
            return f"its ping failed ({type(exc).__name__})"
        if health.status is not HealthStatus.ALIVE:
            return f"its ping found it {health.status.value}"
        # Untracked: another worker watches it (its shard is elsewhere); the
        # record, read next, says whether it is live.
        tracked = runtime.tracked.get(entry.session_id)
        if tracked is not None and tracked.state is not SessionState.ACTIVE:
            return "its ping found it unwell"
        return None

    def _stale(self, entry: _Idle) -> str | None:
        """
        Why *entry* is unfit by what the manager knows already (no I/O).
        """
        runtime = self._runtime
        tracked = runtime.tracked.get(entry.session_id)
        if tracked is None:
            # Not watched here is not ended: on a sharded store another
            # worker watches it. Its record decides, when it is handed out.
            expires_at = entry.expires_at
        elif tracked.state is not SessionState.ACTIVE:
            return f"it is {tracked.state.value}"
        else:
            # The tracked deadline is the newest (a ping or a renewal may
            # move it).
            expires_at = tracked.expires_at
        if expires_at is not None:
            left = expires_at - runtime.clock.time()
            if left <= self._margin(entry):
                return f"{max(left, 0):.1f}s from its deadline"
        return None

    async def _sweep(self) -> None:
        """
        Replace the idle sessions that background pings or the clock found
        unfit, so the pool tops up without waiting for a caller to find them.
        """
        unfit: dict[str, str] = {}
        now = anyio.current_time()
        read = now >= self._read_at
        if read:
            self._read_at = now + _SWEEP
        for entry in list(self._idle):
            reason = self._stale(entry)
            if (
                reason is None
                and read
                and entry.session_id not in self._runtime.tracked
            ):
                # Not watched here (another worker may): its record says.
                try:
                    record = await self._runtime.store.get(entry.session_id)
                except TetherError:
                    continue  # the store is down: look again next sweep
                if record is None:
                    reason = "its record is gone"
                elif record.state is not SessionState.ACTIVE:
                    reason = f"it is {record.state.value}"
            if reason is not None:
                unfit[entry.session_id] = reason
        # Callers may have taken some meanwhile: those are theirs to check.
        if not any(entry.session_id in unfit for entry in self._idle):
            return
        fit: collections.deque[_Idle] = collections.deque()
        for entry in self._idle:
            reason = unfit.get(entry.session_id)
            if reason is None:
                fit.append(entry)
            else:
                self._replace(entry.session_id, reason)
        self._idle = fit
        self._notify()

    def _margin(self, entry: _Idle) -> float:
        if self.min_remaining is not None:
            return self.min_remaining
        return _NEAR_DEADLINE * entry.span if entry.span else 0.0

    def _replace(self, session_id: str, reason: str) -> None:
        self._counts["replaced"] += 1
        self._emit(EventKind.POOL_REPLACED, detail=reason, session_id=session_id)
        self._close_soon(session_id)

    # -- creating ----------------------------------------------------------

    async def _create(self, *, refill: bool) -> Session:
        # A refill is counted in _refilling from the moment it is planned.
        if not refill:
            self._creating += 1
        try:
            # Alive before its first session exists: another manager's
            # reconcile must not take the session for one left behind.
            await self._pools.keep_alive()
            return await self._pools.creator.create(
                self._target,
                labels=self._labels,
                lifetime=self._lifetime,
                keepalive=False,
                params=self._params,
                # A refill never waits for admission, nor makes "replace"
                # admission close someone's session (a caller's create obeys
                # the policy).
                no_wait=refill,
            )
        finally:
            if refill:
                self._refilling -= 1
            else:
                self._creating -= 1
            self._notify()

    def _entry(self, record: Session) -> _Idle:
        tracked = self._runtime.tracked.get(record.id)
        if tracked is not None:
            expires = tracked.expires_at
        else:
            expires = record.expires_at.timestamp() if record.expires_at else None
        span = record.lifetime
        if span is None and record.expires_at is not None:
            span = (record.expires_at - record.created_at).total_seconds()
        return _Idle(session_id=record.id, expires_at=expires, span=span)

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(self._refill_loop)

    async def _refill_loop(self) -> None:
        """
        Keep *min_idle* sessions idle, within *max_size* and the credential's
        limit, backing off after failed refills. Never raises.
        """
        try:
            with anyio.CancelScope() as self._refiller:
                async with anyio.create_task_group() as tg:
                    while not self._closed:
                        await self._sweep()
                        changed = self._changed
                        wait_for = self._retry_at - anyio.current_time()
                        if wait_for > 0:
                            await anyio.sleep(wait_for)
                            continue
                        want = min(
                            self.min_idle - len(self._idle) - self._refilling,
                            self.max_size - self._size(),
                        )
                        if want > 0:
                            want = min(want, await self._credential_room())
                        if want > 0:
                            since = self._short_since or anyio.current_time()
                            self._refilling += want
                            for _ in range(want):
                                tg.start_soon(self._refill_one, since)
                            continue
                        # Short but blocked by the credential's limit: other
                        # managers may free a slot without telling us.
                        # Background pings and deadlines change nothing here:
                        # look again now and then, for the sweep.
                        with anyio.move_on_after(
                            min(self._runtime.admission.poll_interval, _SWEEP)
                            if self._short_since is not None
                            else _SWEEP
                        ):
                            await changed.wait()
        finally:
            self._refiller_done.set()

    async def _refill_one(self, since: float) -> None:
        try:
            record = await self._create(refill=True)
        except Exception as exc:  # noqa: BLE001 -- background work never raises
            self._backoff = min(_BACKOFF_MAX, max(_BACKOFF_MIN, self._backoff * 2))
            self._retry_at = anyio.current_time() + self._backoff
            logger.warning(
                EVENT_POOL_REFILL_FAILED,
                pool=self.name,
                provider=self.provider_name,
                error=type(exc).__name__,
                detail=str(exc),
                retry_in=self._backoff,
            )
            return
        self._backoff = 0.0
        if self._closed:
            self._close_soon(record.id)
            return
        self._idle.append(self._entry(record))
        self._counts["refills"] += 1
        self._notify()
        self._emit(
            EventKind.POOL_REFILLED,
            session=record,
            lag=anyio.current_time() - since,
        )

    async def _credential_room(self) -> int:
        """
        How many more sessions the credential's session limit allows (refills
        never wait for admission, nor make ``"replace"`` admission close
        someone's session).
        """
        if isinstance(self._target, FailoverPolicy):
            # Room on any candidate will do: a refill fails over to it.
            room = 0
            for candidate in self._target.candidates:
                room += await self._room_on(candidate.provider)
                if room >= self.max_size:
                    break
            return min(room, self.max_size)
        return await self._room_on(self._target)

    async def _room_on(self, provider: str) -> int:
        slot = self._pools.slots.get(provider)
        limit = slot.provider.capabilities.max_sessions_per_credential
        if limit is None or slot.credential is None:
            return self.max_size
        # A count, not a listing: this runs before each refill, and about
        # every poll interval while the credential is full.
        held = await count_live(self._runtime.store, slot.name, slot.credential)
        # Refills under way may be counted twice (their records are written
        # ahead): erring low only delays a refill.
        return max(0, limit - held - self._refilling)

    # -- handing back and closing ------------------------------------------

    async def _give_back(self, session_id: str, *, used: bool, failed: bool) -> None:
        self._in_use.discard(session_id)
        runtime = self._runtime
        try:
            if runtime.state is not ManagerState.OPEN:
                return  # the manager's exit closes what it tracks
            # Tracked here or not (another worker may watch it), its record
            # says whether it is live.
            record = await self._record(session_id)
            if record is not None and not failed and not self._closed:
                clean = not used or await self._reset(record)
                # The pool may have closed, or the session ended, while the
                # reset ran.
                if clean and not self.closed and await self._live(session_id):
                    self._idle.append(self._entry(record))
                    if used:
                        self._counts["reset"] += 1
                        self._emit(EventKind.POOL_RESET, session=record)
                    return
            self._counts["recycled"] += 1
            self._emit(
                EventKind.POOL_RECYCLED,
                session=record,
                detail="failed" if failed else "used",
                session_id=session_id,
            )
            self._closing += 1
            try:
                await self._close(session_id)
            finally:
                self._closing -= 1
        finally:
            self._notify()

    async def _reset(self, record: Session) -> bool:
        slot = self._pools.slots.get(record.provider)
        provider = slot.provider
        if type(provider).reusable:
            return True
        try:
            return bool(
                await self._pools.calls.call(
                    slot,
                    lambda: provider.reset(record),
                    operation="reset",
                    session_id=record.id,
                    breaker=False,
                )
            )
        except TetherError as exc:
            logger.warning(
                EVENT_POOL_RESET_FAILED,
                pool=self.name,
                session_id=record.id,
                error=type(exc).__name__,
            )
            return False

    async def _close(self, session_id: str) -> None:
        with contextlib.suppress(TetherError):
            await self._pools.closer.close(session_id)

    def _close_soon(self, session_id: str) -> None:
        tg = self._runtime.tg
        self._closing += 1

        async def close() -> None:
            try:
                with self._runtime.shielded():
                    await self._close(session_id)
            finally:
                self._closing -= 1
                self._notify()

        if tg is None:  # pragma: no cover -- the manager is open while pools run
            self._closing -= 1
            return
        tg.start_soon(close)

    async def aclose(self) -> None:
        """
        Stop refilling and close every session the pool made, idle or in use
        (the manager exits): tracked by this manager or not (on a sharded
        store another worker may watch it), they have no user left.
        """
        if self._closed:
            return
        self._closed = True
        self._notify()
        if self._refiller is not None:
            self._refiller.cancel()
            await self._refiller_done.wait()
        idle, self._idle = list(self._idle), collections.deque()
        ids = [entry.session_id for entry in idle] + sorted(self._in_use)
        async with anyio.create_task_group() as tg:
            for session_id in ids:
                tg.start_soon(self._close, session_id)


@attrs.define
class _Use:
    used: bool = False


class Pools:
    """
    The pools of one manager, by name.
    """

    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        calls: Calls,
        records: Records,
        bus: EventBus,
        creator: Creator,
        closer: Closer,
        health: HealthMonitor,
        operations: Operations,
    ) -> None:
        self.runtime = runtime
        self.slots = slots
        self.calls = calls
        self.records = records
        self.bus = bus
        self.creator = creator
        self.closer = closer
        self.health = health
        self.operations = operations
        self._pools: dict[str, tuple[tuple[Any, ...], Pool[Any]]] = {}
        # When this manager's liveness lease is next due for renewal (anyio
        # time), and whether it holds one.
        self._renew_at = 0.0
        self._alive = False
        self._stopped = False
        self._renewing = anyio.Lock()

    def __iter__(self) -> collections.abc.Iterator[Pool[Any]]:
        return iter([pool for _, pool in self._pools.values()])

    async def keep_alive(self) -> None:
        """
        Claim, or renew when due, the lease that says this manager (and so
        its pools) is alive: a pooled session whose owner's lease lapsed is
        one a crashed manager left, and reconcile closes it.
        """
        async with self._renewing:
            if self._stopped or anyio.current_time() < self._renew_at:
                return
            runtime = self.runtime
            ttl = owner_ttl(runtime)
            token = await runtime.store.claim(
                owner_key(runtime.owner), runtime.owner, ttl
            )
            if token is None:
                logger.warning(EVENT_POOL_OWNER_TAKEN, owner=runtime.owner)
            self._alive = True
            self._renew_at = anyio.current_time() + _renew_interval(ttl)

    async def _keep_alive_loop(self) -> None:
        while True:
            try:
                await self.keep_alive()
            except TetherError as exc:
                logger.warning(
                    EVENT_POOL_OWNER_RENEW_FAILED,
                    owner=self.runtime.owner,
                    error=type(exc).__name__,
                )
            await anyio.sleep(_renew_interval(owner_ttl(self.runtime)))

    def get(
        self,
        target: str | FailoverPolicy,
        *,
        name: str | None,
        labels: Mapping[str, str] | None,
        lifetime: float | timedelta | None,
        min_idle: int,
        max_size: int,
        timeout: float,
        ping_on_acquire: bool,
        min_remaining: float | None,
        params: Mapping[str, Any],
    ) -> Pool[Any]:
        """
        What :meth:`SessionManager.pool` does: the pool for these arguments,
        made (and started) on first use. Every input is checked here.
        """
        self.runtime.check_open()
        _check_count("min_idle", min_idle, minimum=0)
        _check_count("max_size", max_size, minimum=1)
        if min_idle > max_size:
            msg = f"min_idle ({min_idle}) must not exceed max_size ({max_size})"
            raise ConfigError(msg)
        if not _is_number(timeout) or timeout < 0:
            msg = f"timeout must be a number of seconds, 0 or more, not {timeout!r}"
            raise ConfigError(msg)
        if min_remaining is not None and (
            not _is_number(min_remaining) or min_remaining < 0
        ):
            msg = (
                "min_remaining must be a number of seconds, 0 or more, "
                f"or None, not {min_remaining!r}"
            )
            raise ConfigError(msg)
        raw_ping: object = ping_on_acquire  # untyped callers get a typed error
        if not isinstance(raw_ping, bool):
            msg = f"ping_on_acquire must be True or False, not {ping_on_acquire!r}"
            raise ConfigError(msg)
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
        if lifetime is not None and not positive_seconds(lifetime):
            msg = f"lifetime must be a positive number of seconds, not {lifetime!r}"
            raise ConfigError(msg)
        checked = check_labels(labels)
        for own in (POOL_LABEL, POOL_OWNER_LABEL):
            if own in checked:
                msg = f"the label {own!r} is the pool's own"
                raise ConfigError(msg)
        if isinstance(target, FailoverPolicy):
            if params:
                msg = "with a FailoverPolicy, give parameters on each Candidate"
                raise ConfigError(msg)
            # The pool replaces a lost session itself: the manager must not
            # re-create it behind the pool's back.
            target = attrs.evolve(target, recreate_lost=False)
            candidates = [(c.provider, c.params) for c in target.candidates]
            provider = target.candidates[0].provider
        elif isinstance(target, str):
            candidates = [(target, params)]
            provider = target
        else:  # untyped callers get a clear error
            msg = f"provider must be a name, a provider class or a FailoverPolicy, not {type(target).__name__}"  # type: ignore[unreachable]
            raise ConfigError(msg)
        for candidate, candidate_params in candidates:
            # Bad parameters fail here, not in a refill in the background.
            slot = self.slots.get(candidate)
            parsed = slot.provider.parse_create(candidate_params)
            slot.provider.lifetime_for(lifetime, parsed)
        pool_id = name if name is not None else pool_name(target, params)
        check_labels({POOL_LABEL: pool_id})
        key = (
            target,
            json.dumps(dict(params), sort_keys=True, default=repr),
            json.dumps(checked, sort_keys=True),
            lifetime,
            min_idle,
            max_size,
            timeout,
            ping_on_acquire,
            min_remaining,
        )
        found = self._pools.get(pool_id)
        if found is not None:
            if found[0] != key:
                msg = (
                    f"a pool named {pool_id!r} exists with other settings; "
                    "give this one another name"
                )
                raise ConfigError(msg)
            return found[1]
        pool: Pool[Any] = Pool(
            pools=self,
            name=pool_id,
            target=target,
            provider=provider,
            params=params,
            labels=checked,
            lifetime=lifetime,
            min_idle=min_idle,
            max_size=max_size,
            timeout=float(timeout),
            ping_on_acquire=ping_on_acquire,
            min_remaining=min_remaining,
        )
        assert self.runtime.tg is not None  # noqa: S101 -- open, so running
        if not self._pools:
            self.runtime.tg.start_soon(self._keep_alive_loop)
        pool.start(self.runtime.tg)
        self._pools[pool_id] = (key, pool)
        return pool

    async def aclose(self) -> None:
        """
        Close every pool (the manager is exiting), whatever fails.
        """
        async with anyio.create_task_group() as tg:
            for pool in self:
                tg.start_soon(pool.aclose)
        self._stopped = True
        if self._alive:
            runtime = self.runtime
            with contextlib.suppress(TetherError):
                await runtime.store.release(owner_key(runtime.owner), runtime.owner)


def _renew_interval(ttl: float) -> float:
    return max(min(ttl / 3, 1.0), 0.05)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _check_count(field: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"{field} must be a whole number, {minimum} or more, not {value!r}"
        raise ConfigError(msg)
