"""
Issue 14, point 6: a close under Sipher's rate limit, or one slower than the
shield, either finishes or leaves the record CLOSING with a typed error, a
``close_failed`` event, a note on the record and a warning, never silently; the
session then stays on the service (the emulator's ground truth) until a later
close or ``reconcile()`` ends it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import structlog

import tether
from tether import SessionState
from tether.exceptions import ProviderUnavailableError, RateLimitedError
from tether.testing import ASGIServer, ManualClock, serve_asgi
from tether_sipher import SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


# Far below Sipher's Retry-After (60 s), so a test never waits for it; the held
# DELETE below is released only by the test.
SHIELD = 1.0


def _manager(
    server: ASGIServer, clock: ManualClock, **options: Any
) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sipher", SipherProvider)
    return tether.SessionManager(
        registry=registry,
        config={"sipher": {"base_url": server.url, "api_key": PRO_KEY, "timeout": 30}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        shield_timeout=SHIELD,
        environ={},
        **options,
    )


def _failed(
    logs: list[dict[str, Any]], session: tether.Session
) -> list[dict[str, Any]]:
    return [
        e
        for e in logs
        if e["event"] == "tether.session.close_failed"
        and e.get("session_id") == session.id
    ]


class HoldDeletes:
    """
    ASGI middleware that holds every DELETE until :attr:`release` is set, then
    answers 503 without passing it on: the close never reached the service.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hold = True
        self.held = 0
        self.release = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "DELETE" and self.hold:
            self.held += 1
            await self.release.wait()
            body = b'{"success":false}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@pytest.fixture(name="held")
async def _held(
    emulator: SipherEmulator,
) -> AsyncIterator[tuple[HoldDeletes, ASGIServer]]:
    """
    The emulator behind :class:`HoldDeletes`, on a loopback port.
    """
    hold = HoldDeletes(emulator.app)
    try:
        async with serve_asgi(hold) as server:
            yield hold, server
    finally:
        hold.release.set()


async def test_rate_limited_close_is_typed_noted_and_finished_later(
    server: ASGIServer, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    A DELETE answered 429 with Retry-After 60 (longer than the shield) raises
    RateLimitedError at once; the record stays CLOSING with a note, a
    close_failed event and a warning say so, and the emulator still holds the
    session; once the window passes, a close ends it and drops the note.
    """
    async with _manager(server, clock) as manager:
        s = await manager.create("sipher")
        emulator.rate_limit = 0
        with structlog.testing.capture_logs() as logs:
            async with manager.events() as events:
                with pytest.raises(RateLimitedError) as info:
                    await manager.close(s)
                event = events.receive_nowait()

        assert info.value.retry_after is not None
        assert info.value.retry_after > SHIELD
        record = await manager.get(s.id)
        assert record.state is SessionState.CLOSING
        assert record.error is not None
        assert "RateLimitedError" in record.error
        assert (tether.EventKind.CLOSE_FAILED, s.id) == (event.kind, event.session.id)
        assert event.detail == record.error
        [warning] = _failed(logs, s)
        assert warning["log_level"] == "warning"
        assert warning["error"] == "RateLimitedError"
        assert warning["remote_id"] == s.remote_id
        assert warning["provider"] == "sipher"
        assert s.remote_id in emulator.live_sessions()

        # The limit lifts: the next close finishes it.
        emulator.rate_limit = 100
        await clock.advance(61)
        closed = await manager.close(s.id)
        assert closed.state is SessionState.CLOSED
        assert closed.error is None
        assert s.remote_id not in emulator.live_sessions()


async def test_rate_limited_exit_reports_each_session_and_reconcile_ends_them(
    server: ASGIServer, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    At manager exit under the rate limit, each close that fails is logged by
    session id, provider and remote id (never the key), and the records stay
    CLOSING in the store; the next manager's reconcile() ends them once the
    window passes.
    """
    store = tether.MemoryStore()
    with structlog.testing.capture_logs() as logs:
        async with _manager(server, clock, store=store) as manager:
            sessions = [await manager.create("sipher") for _ in range(2)]
            emulator.rate_limit = 0

    remote = {s.remote_id for s in sessions}
    assert remote <= emulator.live_sessions()
    for s in sessions:
        [warning] = _failed(logs, s)
        assert (warning["provider"], warning["remote_id"]) == ("sipher", s.remote_id)
        assert warning["error"] == "RateLimitedError"
        record = await store.get(s.id)
        assert record is not None
        assert record.state is SessionState.CLOSING
        assert record.error is not None
    assert PRO_KEY not in repr(logs)

    emulator.rate_limit = 100
    await clock.advance(61)
    async with _manager(server, clock, store=store) as manager:
        await manager.reconcile(provider="sipher")
        for s in sessions:
            assert (await manager.get(s.id)).state is SessionState.CLOSED
    assert not remote & emulator.live_sessions()


async def test_close_slower_than_the_shield_is_typed_noted_and_finished_later(
    held: tuple[HoldDeletes, ASGIServer],
    emulator: SipherEmulator,
    clock: ManualClock,
) -> None:
    """
    A DELETE that gets no answer within shield_timeout: close() raises
    ProviderUnavailableError, the record stays CLOSING with a note, a
    close_failed event and a warning say so, and the emulator still holds the
    session; a later close ends it.
    """
    hold, server = held
    async with _manager(server, clock) as manager:
        s = await manager.create("sipher")
        with structlog.testing.capture_logs() as logs:
            async with manager.events() as events:
                with pytest.raises(ProviderUnavailableError) as info:
                    await manager.close(s)
                event = events.receive_nowait()

        assert hold.held == 1
        assert "did not finish within" in str(info.value)
        record = await manager.get(s.id)
        assert record.state is SessionState.CLOSING
        assert record.error is not None
        assert "did not finish within" in record.error
        assert (tether.EventKind.CLOSE_FAILED, s.id) == (event.kind, event.session.id)
        [warning] = _failed(logs, s)
        assert warning["log_level"] == "warning"
        assert warning["remote_id"] == s.remote_id
        assert s.remote_id in emulator.live_sessions()

        hold.hold = False
        hold.release.set()
        closed = await manager.close(s.id)
        assert closed.state is SessionState.CLOSED
        assert closed.error is None
        assert s.remote_id not in emulator.live_sessions()


async def test_block_end_close_slower_than_the_shield_raises(
    held: tuple[HoldDeletes, ASGIServer],
    emulator: SipherEmulator,
    clock: ManualClock,
) -> None:
    """
    At the end of a session() block, a close that runs out of the shield raises
    ProviderUnavailableError from the block (it passed silently), with the
    event, the warning and the CLOSING record; the manager's exit tries again,
    and says so too.
    """
    hold, server = held
    with structlog.testing.capture_logs() as logs:
        async with _manager(server, clock) as manager:
            async with manager.events() as events:
                with pytest.raises(ProviderUnavailableError):
                    async with manager.session("sipher") as s:
                        pass
                kinds = []
                while True:
                    try:
                        kinds.append(events.receive_nowait().kind)
                    except anyio.WouldBlock:
                        break
            assert tether.EventKind.CLOSE_FAILED in kinds
            record = await manager.get(s.id)
            assert record.state is SessionState.CLOSING
            assert record.error is not None
            assert s.remote_id in emulator.live_sessions()

    # Once at the block's end, once at exit: both said so.
    assert hold.held == 2
    assert len(_failed(logs, s)) == 2
    assert s.remote_id in emulator.live_sessions()
