"""
The session value and the lifecycle's state machine.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

import tether
from tether._session import TRANSITIONS, can_transition
from tether.exceptions import (
    InvalidTransitionError,
    SessionClosedError,
    SessionExpiredError,
    SessionLostError,
)


S = tether.SessionState
ALL_PAIRS = list(itertools.product(S, S))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


def make(state: tether.SessionState = S.ACTIVE, **kw: object) -> tether.Session:
    return tether.Session(id="s1", provider="fake", state=state, **kw)  # type: ignore[arg-type]


def test_every_state_has_a_row() -> None:
    """
    The transition table covers every state.
    """
    assert set(S) == set(TRANSITIONS)


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=lambda s: s.value)
def test_allowed_transitions(
    source: tether.SessionState, target: tether.SessionState
) -> None:
    """
    Every transition in the table is carried out, and bumps nothing else.
    """
    session = make(source)

    moved = session.transition(target)

    assert target == moved.state
    assert session.id == moved.id
    assert can_transition(source, target)


@pytest.mark.parametrize(("source", "target"), REFUSED, ids=lambda s: s.value)
def test_refused_transitions(
    source: tether.SessionState, target: tether.SessionState
) -> None:
    """
    Every transition outside the table raises InvalidTransitionError naming both states.
    """
    with pytest.raises(InvalidTransitionError) as info:
        make(source).transition(target)

    assert source.value == info.value.source
    assert target.value == info.value.target
    assert "s1" in str(info.value)


def test_terminal_states_are_not_live() -> None:
    """
    Only CREATING, ACTIVE and DEGRADED are live; the four ends are terminal.
    """
    assert {S.CREATING, S.ACTIVE, S.DEGRADED} == {s for s in S if s.is_live}
    assert {S.CLOSED, S.EXPIRED, S.LOST, S.FAILED} == {s for s in S if s.is_terminal}


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (S.CLOSED, SessionClosedError),
        (S.CLOSING, SessionClosedError),
        (S.FAILED, SessionClosedError),
        (S.EXPIRED, SessionExpiredError),
        (S.LOST, SessionLostError),
    ],
)
def test_ensure_usable_raises_the_matching_error(
    state: tether.SessionState, error: type[Exception]
) -> None:
    """
    An ended session says how it ended.
    """
    with pytest.raises(error):
        make(state, error="why").ensure_usable()


def test_live_session_is_usable() -> None:
    """
    A live session passes ensure_usable.
    """
    make(S.DEGRADED).ensure_usable()


def test_round_trip_through_dict() -> None:
    """
    to_dict and from_dict preserve every field (stores rely on it).
    """
    now = datetime(2030, 1, 1, tzinfo=UTC)
    session = make(
        remote_id="r1",
        raw_state="running",
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=60),
        labels={"job": "42"},
        params={"size": 2},
        data={"vm_id": "v"},
        credential="fake:abc",
        lifetime=60.0,
        keepalive=True,
        error=None,
        version=3,
    )

    assert session == tether.Session.from_dict(session.to_dict())


def test_values_are_frozen() -> None:
    """
    A session cannot be changed in place, nor can its labels.
    """
    session = make(labels={"a": "b"})

    with pytest.raises(AttributeError):
        session.state = S.CLOSED  # type: ignore[misc]
    with pytest.raises(TypeError):
        session.labels["a"] = "c"  # type: ignore[index]


def test_naive_datetimes_are_refused() -> None:
    """
    Deadlines must be timezone-aware.
    """
    with pytest.raises(ValueError, match="timezone-aware"):
        make(expires_at=datetime(2030, 1, 1))  # noqa: DTZ001


def test_seconds_left() -> None:
    """
    seconds_left counts down to expires_at, and is None without one.
    """
    now = datetime(2030, 1, 1, tzinfo=UTC)

    assert 30.0 == make(expires_at=now + timedelta(seconds=30)).seconds_left(now)
    assert make().seconds_left(now) is None


def test_health_ok() -> None:
    """
    Only ALIVE health is ok.
    """
    assert tether.Health(status="alive").ok
    assert not tether.Health(status="degraded").ok


def test_evolve_converts_what_changes() -> None:
    """
    Session.evolve copies the value, converting the changed fields as the
    constructor would; an unknown field is a TypeError.
    """
    session = make(labels={"a": "b"})

    changed = session.evolve(state="degraded", labels={"c": "d"})

    assert S.DEGRADED is changed.state
    assert {"c": "d"} == dict(changed.labels)
    with pytest.raises(TypeError):
        changed.labels["c"] = "e"  # type: ignore[index]
    assert {"a": "b"} == dict(session.labels)
    assert session.id == changed.id
    with pytest.raises(TypeError, match="no field"):
        session.evolve(colour="red")


def test_evolve_matches_attrs_evolve() -> None:
    """
    The fast evolve gives the same value as attrs.evolve.
    """
    import attrs  # noqa: PLC0415

    session = make(remote_id="r", data={"x": 1}, lifetime=5.0)

    assert attrs.evolve(session, raw_state="up", version=7) == session.evolve(
        raw_state="up", version=7
    )
