"""
Lifecycle events, and circuit breakers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from tether._session import Session, SessionState, _frozen_mapping
from tether._validators import number


class EventKind(enum.StrEnum):
    """
    What happened.
    """

    CREATED = "created"
    CREATE_FAILED = "create_failed"
    UPDATED = "updated"
    PINGED = "pinged"
    DEGRADED = "degraded"
    RECOVERED = "recovered"
    LOST = "lost"
    EXPIRED = "expired"
    RENEWED = "renewed"
    CLOSED = "closed"
    CLOSE_FAILED = "close_failed"
    OPERATION = "operation"
    FAILOVER = "failover"
    BREAKER_OPENED = "breaker_opened"
    BREAKER_HALF_OPEN = "breaker_half_open"
    BREAKER_CLOSED = "breaker_closed"
    #: A pool created a session for its idle set.
    POOL_REFILLED = "pool.refilled"
    #: A pool found an idle session unfit (ended, degraded, lost, near its
    #: deadline) and closed it instead of handing it out.
    POOL_REPLACED = "pool.replaced"
    #: A session handed back to a pool was closed, not reused.
    POOL_RECYCLED = "pool.recycled"
    #: A session handed back to a pool was reset and went back to its idle set.
    POOL_RESET = "pool.reset"
    #: A pool had no session for a caller within its timeout.
    POOL_EXHAUSTED = "pool.exhausted"


@attrs.frozen(kw_only=True)
class Event:
    """
    One lifecycle event, as delivered by :meth:`tether.SessionManager.events`.

    Attributes:
        kind: What happened.
        at: When (by the manager's clock).
        provider: The provider concerned.
        session: The session after the event, when it concerns one.
        previous_state: The state before, for state changes.
        detail: A human explanation.
        data: More facts, e.g. ``{"old": id, "new": id}`` for a failover, or the
            breaker key.
    """

    kind: EventKind
    at: datetime
    provider: str
    session: Session | None = None
    previous_state: SessionState | None = None
    detail: str | None = None
    data: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )


class BreakerState(enum.StrEnum):
    """
    A circuit breaker's state.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """
    When a provider (or failover candidate) is taken out of rotation.

    Attributes:
        failure_threshold: Consecutive failures that open the breaker.
        cooldown: Seconds an open breaker waits before letting one probe through.
    """

    failure_threshold: int = attrs.field(
        default=5, validator=number(ge=1, integer=True)
    )
    cooldown: float = attrs.field(default=30.0, validator=number(ge=0))


@attrs.define
class CircuitBreaker:
    """
    Opens after consecutive failures, cools down, lets one probe through, closes on success.
    """

    key: str
    policy: BreakerPolicy
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def ready_at(self) -> float:
        """
        When the breaker lets a call through (a time on the manager's clock).
        """
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.policy.cooldown
        return 0.0

    def allow(self, now: float) -> tuple[bool, BreakerState | None]:
        """
        Whether a call may go through now, and the state it moved to, if any.
        """
        if self.state is BreakerState.CLOSED:
            return True, None
        if self.state is BreakerState.OPEN:
            if now >= self.ready_at():
                self.state = BreakerState.HALF_OPEN
                self.probing = True
                return True, BreakerState.HALF_OPEN
            return False, None
        if self.probing:
            return False, None
        self.probing = True
        return True, None

    def record_success(self) -> BreakerState | None:
        changed = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = None
        self.probing = False
        return BreakerState.CLOSED if changed else None

    def record_failure(self, now: float) -> BreakerState | None:
        self.failures += 1
        self.probing = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED
            and self.failures >= self.policy.failure_threshold
        ):
            self.state = BreakerState.OPEN
            self.opened_at = now
            return BreakerState.OPEN
        if self.state is BreakerState.OPEN:
            self.opened_at = now
        return None
