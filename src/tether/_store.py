"""
The in-memory store: the default, for tests and short scripts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from tether._session import Session, SessionState, with_version
from tether.exceptions import (
    AdmissionError,
    LeaseLostError,
    SessionExistsError,
    SessionNotFoundError,
    StaleRecordError,
)


def matches(
    session: Session,
    *,
    provider: str | None = None,
    states: Sequence[SessionState] | None = None,
    labels: Mapping[str, str] | None = None,
) -> bool:
    """
    Whether *session* passes every filter given (shared by every store).
    """
    if provider is not None and session.provider != provider:
        return False
    if states is not None and session.state not in states:
        return False
    return not labels or all(session.labels.get(k) == v for k, v in labels.items())


def _live_on(session: Session, provider: str, credential: str | None) -> bool:
    # What admission counts against a credential's limit.
    return (
        session.provider == provider
        and session.credential == credential
        and session.state.is_live
    )


def live_for_credential(sessions: Sequence[Session], session: Session) -> int:
    """
    How many of *sessions* are live on *session*'s provider and credential.
    """
    return sum(
        1
        for s in sessions
        if s.id != session.id and _live_on(s, session.provider, session.credential)
    )


@runtime_checkable
class LiveCounter(Protocol):
    """
    A store that counts a credential's live sessions without listing them
    (optional: see :class:`tether.abc.Store`).
    """

    async def count_live(self, provider: str, credential: str) -> int: ...


class _Lister(Protocol):
    async def list(self, *, provider: str | None = None) -> list[Session]: ...


async def count_live(store: _Lister, provider: str, credential: str) -> int:
    """
    How many live sessions *store* holds of *provider* and *credential*: by
    its own ``count_live()`` where it has one, else from a listing (a store
    written before the method existed).
    """
    if isinstance(store, LiveCounter):
        return await store.count_live(provider, credential)
    listed = await store.list(provider=provider)
    return sum(1 for s in listed if _live_on(s, provider, credential))


@attrs.define
class MemoryStore:
    """
    Session records in a dict: fast, and gone when the process ends.

    Every method completes without awaiting anything in between, so each is
    atomic with respect to other tasks in the same event loop.
    """

    _clock: Callable[[], float] = attrs.field(
        default=time.monotonic, alias="clock", kw_only=True
    )
    _records: dict[str, Session] = attrs.field(factory=dict, init=False)
    # session id -> (owner, fencing token, lease deadline)
    _leases: dict[str, tuple[str, int, float]] = attrs.field(factory=dict, init=False)

    async def insert(
        self, session: Session, *, credential_limit: int | None = None
    ) -> Session:
        if session.id in self._records:
            msg = f"a session with id {session.id} exists already"
            raise SessionExistsError(
                msg, store="memory://", operation="insert", session_id=session.id
            )
        if credential_limit is not None and session.credential is not None:
            held = live_for_credential(list(self._records.values()), session)
            if held >= credential_limit:
                msg = (
                    f"{session.provider}: the credential holds {held} live "
                    f"session(s), the limit is {credential_limit}"
                )
                raise AdmissionError(
                    msg,
                    provider=session.provider,
                    credential=session.credential,
                    limit=credential_limit,
                )
        stored = with_version(session, 1)
        self._records[session.id] = stored
        return stored

    async def update(self, session: Session, *, fence: int | None = None) -> Session:
        current = self._records.get(session.id)
        if current is None:
            raise SessionNotFoundError(
                f"no session {session.id}", session_id=session.id
            )
        lease = self._leases.get(session.id)
        if fence is not None and lease is not None and lease[1] > fence:
            msg = f"session {session.id}: lease token {fence} was superseded by {lease[1]}"
            raise LeaseLostError(
                msg, session_id=session.id, expected=fence, actual=lease[1]
            )
        if current.version != session.version:
            msg = (
                f"session {session.id} changed since it was read "
                f"(version {session.version}, now {current.version})"
            )
            raise StaleRecordError(
                msg,
                session_id=session.id,
                expected=session.version,
                actual=current.version,
            )
        stored = with_version(session, session.version + 1)
        self._records[session.id] = stored
        return stored

    async def get(self, session_id: str) -> Session | None:
        return self._records.get(session_id)

    async def list(
        self,
        *,
        provider: str | None = None,
        states: Sequence[SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Session]:
        return [
            s
            for s in self._records.values()
            if matches(s, provider=provider, states=states, labels=labels)
        ]

    async def count_live(self, provider: str, credential: str) -> int:
        """
        How many live sessions of *provider* hold *credential*.

        .. versionadded:: Unreleased
        """
        return sum(
            1 for s in self._records.values() if _live_on(s, provider, credential)
        )

    async def delete(self, session_id: str) -> None:
        self._records.pop(session_id, None)
        self._leases.pop(session_id, None)

    async def claim(self, session_id: str, owner: str, ttl: float) -> int | None:
        now = self._clock()
        lease = self._leases.get(session_id)
        if lease is not None and lease[0] != owner and lease[2] > now:
            return None
        if lease is not None and lease[0] == owner and lease[2] > now:
            token = lease[1]
        else:
            token = (lease[1] if lease else 0) + 1
        self._leases[session_id] = (owner, token, now + ttl)
        return token

    async def release(self, session_id: str, owner: str) -> None:
        lease = self._leases.get(session_id)
        if lease is not None and lease[0] == owner:
            # Keep the token, so the next owner's is larger.
            self._leases[session_id] = ("", lease[1], 0.0)

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<MemoryStore sessions={len(self._records)}>"
