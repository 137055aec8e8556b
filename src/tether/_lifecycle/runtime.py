"""
What every collaborator of one manager shares: its policies, clock and store,
whether it is open, and the sessions it tracks.
"""

from __future__ import annotations

import contextlib
import enum
from datetime import datetime
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from tether import _retry
from tether._clock import Clock, to_datetime
from tether._config import (
    AdmissionPolicy,
    Candidate,
    FailoverPolicy,
    HealthPolicy,
    RetryPolicy,
)
from tether._session import Session, SessionState
from tether._store import MemoryStore
from tether.abc import Store
from tether.exceptions import TetherError


class ManagerStateError(TetherError, RuntimeError):
    """
    The manager is used outside its ``async with`` block, or re-entered.
    """


class ManagerState(enum.Enum):
    UNOPENED = 1
    OPEN = 2
    CLOSED = 3


#: Live states that background work watches.
WATCHED: Final = (SessionState.ACTIVE, SessionState.DEGRADED)
#: Ended for good: their records may be deleted after retain_ended. (LOST and
#: CLOSING may still need a close on the service.)
PRUNABLE: Final = (SessionState.CLOSED, SessionState.EXPIRED, SessionState.FAILED)
#: Ended, and nothing more to do on the service.
ENDED: Final = PRUNABLE

# A context manager that does nothing, reusable by any number of tasks at once.
_NO_SHIELD: Final = contextlib.nullcontext()


@attrs.define
class Tracked:
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
    # The newest record this manager knows, kept only where something keeps
    # it current (ownership by shard, with its change feed).
    record: Session | None = None


@attrs.define(eq=False)
class Runtime:
    """
    The state one manager's collaborators share.

    The policies are fixed at construction; the store may be replaced once, when
    the manager opens a store URL; *tg* is the manager's task group while open.
    """

    clock: Clock
    store: Store
    retry: RetryPolicy
    health: HealthPolicy
    admission: AdmissionPolicy
    shield_timeout: float
    owner: str
    watch: bool
    retain_ended: float | None
    state: ManagerState = ManagerState.UNOPENED
    tg: anyio.abc.TaskGroup | None = None
    #: The sessions this manager watches, by id.
    tracked: dict[str, Tracked] = attrs.Factory(dict)
    #: Sessions that became LOST while tracked: closed on exit, best effort.
    lost: set[str] = attrs.Factory(set)
    #: Whether each tracked session's record is kept current (Tracked.record),
    #: so a background job need not read it from the store.
    cached_records: bool = False

    def check_open(self) -> None:
        if self.state is ManagerState.OPEN:
            return
        if self.state is ManagerState.UNOPENED:
            msg = "use the SessionManager inside 'async with' first"
            raise ManagerStateError(msg)
        msg = "this SessionManager is closed"
        raise ManagerStateError(msg)

    def now(self) -> datetime:
        return to_datetime(self.clock.time())

    def budget(self) -> _retry.AttemptBudget:
        """
        A fresh attempt budget for one operation, by the retry policy.
        """
        return _retry.AttemptBudget(total=self.retry.attempts)

    def shielded(self) -> anyio.CancelScope:
        """
        A scope that outer cancellation cannot stop, but that gives up after
        the shield timeout: for work that must not be abandoned half-way.
        """
        return anyio.CancelScope(
            shield=True, deadline=anyio.current_time() + self.shield_timeout
        )

    def shield_writes(self) -> contextlib.AbstractContextManager[Any]:
        """
        A shield for store writes that must not be interrupted. The memory
        store never suspends, so nothing can interrupt it: no scope needed.
        """
        if type(self.store) is MemoryStore:
            return _NO_SHIELD
        return anyio.CancelScope(shield=True)

    def untrack(self, session_id: str) -> None:
        # Its heap entries go stale with it, and are skipped when they come due.
        self.tracked.pop(session_id, None)
