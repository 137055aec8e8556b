# Copyright 2026 The tether developers. MIT license.
"""
A create whose answer is lost after the service acted is never repeated blindly.

An ASGI middleware in front of the emulator lets the create happen, then drops
the answer (a reset) or replaces it with a gateway's 502 or 504; the emulator's
``live_sessions()`` is the ground truth.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import tether
from tether import SessionState
from tether.testing import (
    ASGIServer,
    LoseAnswer,
    ManualClock,
    serve_asgi,
)
from tether_relay import RelayProvider
from tether_relay.emulator import RelayEmulator


TOKEN = "relay-secret-token-0123456789"
FAST = {
    "poll_initial": 0.002,
    "poll_max": 0.005,
    "ready_timeout": 5.0,
    "cleanup_timeout": 2.0,
}


@pytest.fixture(name="lose")
def _lose(emulator: RelayEmulator) -> LoseAnswer:
    return LoseAnswer(emulator.app, "POST", "/v1/relays/sessions", "502")


@pytest.fixture(name="server")
async def _server(lose: LoseAnswer) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(lose) as server:
        yield server


def _manager(server: ASGIServer, clock: ManualClock) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("relay", RelayProvider)
    return tether.SessionManager(
        registry=registry,
        config={"relay": {"base_url": server.url, "api_token": TOKEN, **FAST}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        on_exit="keep",
    )


@pytest.mark.parametrize("how", ["502", "504", "reset"])
async def test_lost_create_answer_is_found_not_repeated(
    server: ASGIServer,
    clock: ManualClock,
    emulator: RelayEmulator,
    lose: LoseAnswer,
    how: str,
) -> None:
    """
    The one session the service made is found in its list (by its users) and
    tracked; no second create is sent.
    """
    lose.how = how
    async with _manager(server, clock) as manager:
        session = await manager.create("relay", users=["1.1.1.1", "8.8.8.8"])
        tracked = await manager.list(provider="relay")
    creates = [r for r in emulator.received if r[:2] == ("POST", lose.path)]

    assert lose.lost == 1
    assert len(creates) == 1
    assert emulator.live_sessions() == [session.remote_id]
    assert [(s.remote_id, s.state) for s in tracked] == [
        (session.remote_id, SessionState.ACTIVE)
    ]


async def test_lost_create_answer_waits_for_the_session_to_show_its_users(
    server: ASGIServer,
    clock: ManualClock,
    emulator: RelayEmulator,
    lose: LoseAnswer,
) -> None:
    """
    A relay shows its users only once ready: the provider lets the sessions
    still initializing settle before the manager looks in the list.
    """
    emulator.ready_delay = 30.0

    async def advance_soon() -> None:
        # The relay becomes ready while the provider watches the list.
        await anyio.sleep(0.05)
        await clock.advance(30)

    async with _manager(server, clock) as manager, anyio.create_task_group() as tg:
        tg.start_soon(advance_soon)
        session = await manager.create("relay", users=["1.1.1.1"])
        tracked = await manager.list(provider="relay")
    creates = [r for r in emulator.received if r[:2] == ("POST", lose.path)]

    assert len(creates) == 1
    assert emulator.live_sessions() == [session.remote_id]
    assert [s.remote_id for s in tracked] == [session.remote_id]


class _TruncatedLists:
    """
    Listings answer an empty page (a partial list, as behind a gateway that
    cut it) until the second create's answer was lost: the session the first
    one made is not in them.
    """

    def __init__(self, app: LoseAnswer) -> None:
        self.app = app
        self.truncated = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or (scope["method"], scope["path"]) != ("GET", "/v1/relays/sessions")
            or self.app.lost >= 2
        ):
            await self.app(scope, receive, send)
            return
        self.truncated += 1
        body = json.dumps({"sessions": [], "pagination": {"has_next": False}})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


async def test_two_matching_sessions_stop_the_create_and_reconcile_keeps_one(
    clock: ManualClock, emulator: RelayEmulator, lose: LoseAnswer
) -> None:
    """
    Two lost answers, and truncated lists between them, leave two sessions
    that match the record (relay keeps no tag). Which is its cannot be told,
    so the create stops there (OutcomeUnknownError, no third session) and the
    record stays CREATING; reconcile then adopts one and closes the other.
    """
    lose.times = 2
    wrapped = _TruncatedLists(lose)
    users = ["1.1.1.1", "8.8.8.8"]
    async with serve_asgi(wrapped) as server, _manager(server, clock) as manager:
        with pytest.raises(tether.exceptions.OutcomeUnknownError, match="2 unclaimed"):
            await manager.create("relay", users=users)
        [record] = await manager.list(provider="relay")
        made = sorted(emulator.live_sessions())
        report = await manager.reconcile(grace=0)
        [settled] = await manager.list(provider="relay")
        left = emulator.live_sessions()
        again = await manager.reconcile(grace=0)
        await manager.close(settled)
    creates = [r for r in emulator.received if r[:2] == ("POST", lose.path)]

    assert 2 == len(creates)
    assert wrapped.truncated >= 1
    assert 2 == len(made)
    assert SessionState.CREATING == record.state
    assert [("adopted", record.id), ("closed", record.id)] == [
        (a.kind, a.session_id) for a in report.actions
    ]
    assert SessionState.ACTIVE == settled.state
    assert [settled.remote_id] == left
    assert settled.remote_id in made
    assert () == again.actions
    assert [] == emulator.live_sessions()


class _ThenRefused:
    """
    Listings come back empty until a create has been refused; the create
    after the lost one is refused (400) without reaching the service.
    """

    def __init__(self, app: LoseAnswer) -> None:
        self.app = app
        self.refused = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = (scope.get("method"), scope.get("path"))
        if scope["type"] == "http" and route == ("POST", "/v1/relays/sessions"):
            if self.app.lost >= 1:
                self.refused += 1
                await _answer(send, 400, {"message": "users: invalid"})
                return
        elif scope["type"] == "http" and route == ("GET", "/v1/relays/sessions"):
            if not self.refused:
                await _answer(
                    send, 200, {"sessions": [], "pagination": {"has_next": False}}
                )
                return
        await self.app(scope, receive, send)


async def _answer(
    send: Any, status: int, body: Any, *, retry_after: int | None = None
) -> None:
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def test_a_failure_after_an_unlisted_lost_create_is_not_final(
    clock: ManualClock, emulator: RelayEmulator, lose: LoseAnswer
) -> None:
    """
    A lost create whose session the (partial) listing did not show, then a
    refusal: the record is not FAILED, since the first session may exist; it
    stays CREATING, and reconcile adopts that session once it shows.
    """
    wrapped = _ThenRefused(lose)
    async with serve_asgi(wrapped) as server, _manager(server, clock) as manager:
        with pytest.raises(tether.exceptions.OutcomeUnknownError) as caught:
            await manager.create("relay", users=["1.1.1.1"])
        [record] = await manager.list(provider="relay")
        report = await manager.reconcile(grace=0)
        [settled] = await manager.list(provider="relay")
        await manager.close(settled)

    assert isinstance(caught.value.__cause__, tether.exceptions.RequestRejectedError)
    assert 1 == wrapped.refused
    assert SessionState.CREATING == record.state
    assert [("adopted", record.id)] == [(a.kind, a.session_id) for a in report.actions]
    assert SessionState.ACTIVE == settled.state
    assert [] == emulator.live_sessions()
