"""
The in-memory store: the default, for tests and short scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from tether._session import Session, SessionState
from tether.exceptions import AdmissionError, SessionNotFoundError, StaleRecordError


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


def live_for_credential(sessions: Sequence[Session], session: Session) -> int:
    """
    How many of *sessions* are live on *session*'s provider and credential.
    """
    return sum(
        1
        for s in sessions
        if s.id != session.id
        and s.provider == session.provider
        and s.credential == session.credential
        and s.state.is_live
    )


@attrs.define
class MemoryStore:
    """
    Session records in a dict: fast, and gone when the process ends.

    Every method completes without awaiting anything in between, so each is
    atomic with respect to other tasks in the same event loop.
    """

    _records: dict[str, Session] = attrs.field(factory=dict)

    async def insert(
        self, session: Session, *, credential_limit: int | None = None
    ) -> Session:
        if session.id in self._records:
            msg = f"a session with id {session.id} exists already"
            raise ValueError(msg)
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
        stored = attrs.evolve(session, version=1)
        self._records[session.id] = stored
        return stored

    async def update(self, session: Session) -> Session:
        current = self._records.get(session.id)
        if current is None:
            raise SessionNotFoundError(
                f"no session {session.id}", session_id=session.id
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
        stored = attrs.evolve(session, version=session.version + 1)
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

    async def delete(self, session_id: str) -> None:
        self._records.pop(session_id, None)

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<MemoryStore sessions={len(self._records)}>"
