"""
The values :meth:`SessionManager.reconcile` and :meth:`SessionManager.snapshot`
return.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import attrs

from tether._clock import to_datetime
from tether._events import BreakerState
from tether._lifecycle.runtime import Runtime
from tether._lifecycle.slots import Slots
from tether._session import SessionState


@attrs.frozen(kw_only=True)
class ReconcileAction:
    """
    One thing :meth:`SessionManager.reconcile` found (and did, unless a dry run).

    Attributes:
        kind: ``"adopted"``, ``"lost"``, ``"failed"``, ``"closed"``, ``"orphan"``
            (reported only), ``"foreign"`` (not tether's, left alone) or
            ``"unresolved"`` (the service cannot say), ``"skipped"`` (a provider
            this process cannot load), ``"unwatched"`` (alive, but no manager
            holds its lease) or ``"attached"`` (such a session, now watched
            by this manager).
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


def snapshot(runtime: Runtime, slots: Slots) -> ManagerSnapshot:
    """
    What one manager holds in memory, at a glance.
    """
    now = runtime.clock.time()
    sessions = []
    counts: dict[str, dict[str, int]] = {name: {} for name in slots.names()}
    for tracked in runtime.tracked.values():
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
                    tracked.expires_at - now if tracked.expires_at is not None else None
                ),
            )
        )
        state_counts = counts.setdefault(tracked.provider, {})
        key = sessions[-1].state.value
        state_counts[key] = state_counts.get(key, 0) + 1
    return ManagerSnapshot(
        at=to_datetime(now),
        providers={
            slot.name: ProviderSnapshot(
                name=slot.name,
                breaker=slot.breaker.state,
                breaker_failures=slot.breaker.failures,
                ping_interval=slot.ping_interval,
                sessions=counts.get(slot.name, {}),
                transport=slot.transport,
            )
            for slot in slots
        },
        breakers={key: b.state for key, b in slots.breakers.items()},
        sessions=tuple(sessions),
    )
