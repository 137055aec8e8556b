"""
Session values and the lifecycle's state machine.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs

from tether._redact import redact_params
from tether.exceptions import (
    InvalidTransitionError,
    SessionClosedError,
    SessionEndedError,
    SessionExpiredError,
    SessionLostError,
)


T = TypeVar("T")


class SessionState(enum.StrEnum):
    """
    Where a session is in its lifecycle.

    ``CREATING`` is written before the remote call (write-ahead), so a crash in the
    middle leaves something to reconcile. ``CLOSED``, ``EXPIRED``, ``LOST`` and
    ``FAILED`` are terminal for use; a ``LOST`` session may still be closed, since
    the service may have it after all.
    """

    #: Recorded before the service is asked (write-ahead). A session stays here
    #: when its create's outcome is unknown, until reconcile settles it.
    CREATING = "creating"
    #: The service has it, and the last ping found it well.
    ACTIVE = "active"
    #: A ping failed, or the service says it is unwell. It may recover.
    DEGRADED = "degraded"
    #: tether is closing it (by request, or at its deadline).
    CLOSING = "closing"
    #: Closed by tether. Terminal.
    CLOSED = "closed"
    #: It reached its deadline (tether's or the service's). Terminal.
    EXPIRED = "expired"
    #: The service no longer has it, or stopped answering for it. Terminal for
    #: use, but it may still be closed: the service may have it after all.
    LOST = "lost"
    #: The create failed: the service never had it. Terminal.
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        """
        Whether a session in this state may hold a remote resource that is usable.
        """
        return self in _LIVE

    @property
    def is_terminal(self) -> bool:
        """
        Whether the session is over for its user.
        """
        return self in _TERMINAL


_LIVE: Final = frozenset(
    {SessionState.CREATING, SessionState.ACTIVE, SessionState.DEGRADED}
)
_TERMINAL: Final = frozenset(
    {SessionState.CLOSED, SessionState.EXPIRED, SessionState.LOST, SessionState.FAILED}
)

#: Every transition the lifecycle allows. Anything else is a bug, ours or a
#: provider's, and raises :class:`~tether.exceptions.InvalidTransitionError`.
TRANSITIONS: Final[Mapping[SessionState, frozenset[SessionState]]] = (
    types.MappingProxyType(
        {
            SessionState.CREATING: frozenset(
                {
                    SessionState.ACTIVE,
                    SessionState.FAILED,
                    SessionState.CLOSING,
                    SessionState.LOST,
                }
            ),
            SessionState.ACTIVE: frozenset(
                {
                    SessionState.DEGRADED,
                    SessionState.CLOSING,
                    SessionState.EXPIRED,
                    SessionState.LOST,
                }
            ),
            SessionState.DEGRADED: frozenset(
                {
                    SessionState.ACTIVE,
                    SessionState.CLOSING,
                    SessionState.EXPIRED,
                    SessionState.LOST,
                }
            ),
            SessionState.CLOSING: frozenset(
                {SessionState.CLOSED, SessionState.EXPIRED, SessionState.LOST}
            ),
            # The service may still hold a lost session: closing it is cleanup.
            SessionState.LOST: frozenset({SessionState.CLOSING}),
            SessionState.CLOSED: frozenset(),
            SessionState.EXPIRED: frozenset(),
            SessionState.FAILED: frozenset(),
        }
    )
)


def can_transition(source: SessionState, target: SessionState) -> bool:
    """
    Whether the lifecycle allows going from *source* to *target*.
    """
    return target in TRANSITIONS[source]


def utcnow() -> datetime:
    return datetime.now(UTC)


_EMPTY: Final[Mapping[str, Any]] = types.MappingProxyType({})


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not value:
        # Most sessions have no labels: share one empty view (memory per session).
        return _EMPTY
    return types.MappingProxyType(dict(value))


def _stored_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    # What a record stores never holds a secret: the values of secret keys
    # (tether's and those providers declare) and Secret objects are masked.
    if not value:
        return _EMPTY
    return types.MappingProxyType(redact_params(value, ()))


def _to_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        msg = "datetimes must be timezone-aware"
        raise ValueError(msg)
    return value.astimezone(UTC)


def _to_utc_required(value: datetime) -> datetime:
    result = _to_utc(value)
    assert result is not None  # noqa: S101
    return result


# Not slotted: a record is copied on every change, and copying an instance
# dict is one C call where slots take one call per field.
@attrs.frozen(kw_only=True, slots=False)
class Session:
    """
    What tether knows about one remote session: a frozen value.

    You get sessions from :class:`~tether.SessionManager`; every operation returns
    a new value. Do not instantiate directly, except in tests and stores.

    Attributes:
        id: tether's id for the session, known before the service answers and
            stable across processes.
        provider: The provider's name, e.g. ``"sandbox"``.
        state: The lifecycle state.
        remote_id: The service's own id, once it has answered.
        raw_state: The service's own word for the state, kept as it said it.
        created_at: When tether started creating it.
        updated_at: When tether last changed this record.
        expires_at: The deadline, when the service or the user set a lifetime.
        labels: Your labels, for :meth:`~tether.SessionManager.list`.
        params: The validated create parameters (never secrets), for re-creation.
        data: Provider data (JSON-like, never secrets).
        credential: A non-secret fingerprint of the credential it was made with.
        lifetime: The lifetime asked for, in seconds (what keepalive renews by).
        keepalive: Whether the manager renews the session before its deadline.
        error: Why the session failed or was lost, in words.
        version: Bumped by the store on every write; guards concurrent writers.
    """

    id: str
    provider: str
    state: SessionState = attrs.field(converter=SessionState)
    remote_id: str | None = None
    raw_state: str | None = None
    created_at: datetime = attrs.field(factory=utcnow, converter=_to_utc_required)
    updated_at: datetime = attrs.field(factory=utcnow, converter=_to_utc_required)
    expires_at: datetime | None = attrs.field(default=None, converter=_to_utc)
    labels: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    params: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_stored_mapping, hash=False, repr=False
    )
    data: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_stored_mapping, hash=False
    )
    credential: str | None = None
    lifetime: float | None = None
    keepalive: bool = False
    error: str | None = None
    version: int = 0

    @property
    def is_live(self) -> bool:
        """
        Whether the session may be used (creating, active or degraded).
        """
        return self.state.is_live

    def seconds_left(self, now: datetime | None = None) -> float | None:
        """
        Seconds until :attr:`expires_at`, or ``None`` without a deadline.
        """
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or utcnow())).total_seconds()

    def transition(
        self,
        target: SessionState,
        *,
        raw_state: str | None = None,
        error: str | None = None,
        **changes: Any,
    ) -> Session:
        """
        Return this session moved to *target*, checking the lifecycle allows it.

        Raises:
            InvalidTransitionError: The lifecycle forbids the move.
        """
        if not can_transition(self.state, target):
            msg = (
                f"session {self.id} cannot go from {self.state.value} to {target.value}"
            )
            raise InvalidTransitionError(
                msg, session_id=self.id, source=self.state.value, target=target.value
            )
        new = _copy(self)
        fields = new.__dict__
        fields["state"] = target
        fields["updated_at"] = utcnow()
        if raw_state is not None:
            fields["raw_state"] = raw_state
        if error is not None:
            fields["error"] = error
        if changes:
            _apply(fields, changes)
        return new

    def evolve(self, **changes: Any) -> Session:
        """
        A copy with *changes*: ``attrs.evolve``, without re-checking the rest.

        The manager changes sessions on every operation; converting only the
        fields that change keeps that cheap.
        """
        new = _copy(self)
        _apply(new.__dict__, changes)
        return new

    def ensure_usable(self) -> None:
        """
        Raise the matching :class:`~tether.exceptions.SessionEndedError` if ended.
        """
        if not self.state.is_terminal and self.state is not SessionState.CLOSING:
            return
        cls: type[SessionEndedError] = {
            SessionState.EXPIRED: SessionExpiredError,
            SessionState.LOST: SessionLostError,
        }.get(self.state, SessionClosedError)
        msg = f"session {self.id} ({self.provider}) is {self.state.value}"
        if self.error:
            msg = f"{msg}: {self.error}"
        raise cls(
            msg, session_id=self.id, provider=self.provider, state=self.state.value
        )

    def to_dict(self) -> dict[str, Any]:
        """
        A JSON-ready dict of this session, for stores.
        """
        return {
            "id": self.id,
            "provider": self.provider,
            "state": self.state.value,
            "remote_id": self.remote_id,
            "raw_state": self.raw_state,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "labels": dict(self.labels),
            "params": dict(self.params),
            "data": dict(self.data),
            "credential": self.credential,
            "lifetime": self.lifetime,
            "keepalive": self.keepalive,
            "error": self.error,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Session:
        """
        Rebuild a session from :meth:`to_dict`'s output.
        """
        expires_at = record.get("expires_at")
        return cls(
            id=record["id"],
            provider=record["provider"],
            state=SessionState(record["state"]),
            remote_id=record.get("remote_id"),
            raw_state=record.get("raw_state"),
            created_at=datetime.fromisoformat(record["created_at"]),
            updated_at=datetime.fromisoformat(record["updated_at"]),
            expires_at=datetime.fromisoformat(expires_at) if expires_at else None,
            labels=record.get("labels") or {},
            params=record.get("params") or {},
            data=record.get("data") or {},
            credential=record.get("credential"),
            lifetime=record.get("lifetime"),
            keepalive=bool(record.get("keepalive", False)),
            error=record.get("error"),
            version=int(record.get("version", 0)),
        )


_CONVERTERS: Final[Mapping[str, Any]] = {
    f.name: f.converter for f in attrs.fields(Session) if f.converter is not None
}


def _copy(value: T) -> T:
    """
    A copy of a frozen attrs value, for changing before anyone else holds it.
    """
    new = object.__new__(type(value))
    new.__dict__.update(value.__dict__)
    return new


def with_version(session: Session, version: int) -> Session:
    """
    *session* at *version*: what a store returns for the record it wrote.
    """
    new = _copy(session)
    new.__dict__["version"] = version
    return new


def _apply(fields: dict[str, Any], changes: Mapping[str, Any]) -> None:
    # Only on the fields of a copy nobody else holds yet.
    for name, value in changes.items():
        if name not in fields:
            msg = f"Session has no field {name!r}"
            raise TypeError(msg)
        convert = _CONVERTERS.get(name)
        fields[name] = convert(value) if convert else value


class HealthStatus(enum.StrEnum):
    """
    What a ping found.
    """

    #: The service has the session and it is usable.
    ALIVE = "alive"
    #: The service answered, but the session is not well (or the ping failed).
    DEGRADED = "degraded"
    #: The service says the session does not exist or was closed by it.
    GONE = "gone"
    #: The service says the session reached its lifetime.
    EXPIRED = "expired"


@attrs.frozen(kw_only=True, slots=False)
class Health:
    """
    The result of one ping.

    Attributes:
        status: What the ping found.
        raw_state: The service's own word for the state.
        checked_at: When the answer came.
        latency: Seconds the ping took, measured by the manager.
        detail: A human explanation, e.g. why it is degraded.
        expires_at: The deadline the service reports now, if it does.
        data: Provider data that changed (merged into the session's data).
    """

    status: HealthStatus = attrs.field(converter=HealthStatus)
    raw_state: str | None = None
    checked_at: datetime = attrs.field(factory=utcnow)
    latency: float | None = None
    detail: str | None = None
    expires_at: datetime | None = attrs.field(default=None, converter=_to_utc)
    data: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )

    @property
    def ok(self) -> bool:
        """
        Whether the session is alive.
        """
        return self.status is HealthStatus.ALIVE


def stamp_health(health: Health, *, latency: float, checked_at: datetime) -> Health:
    """
    *health* as the manager measured it: ``attrs.evolve`` without re-validating.
    """
    new = _copy(health)
    new.__dict__.update(latency=latency, checked_at=_to_utc_required(checked_at))
    return new
