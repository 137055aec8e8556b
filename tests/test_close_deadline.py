"""
Issue 14, point 6: a close that runs out of its shield deadline (here, a fake
service that holds the close) is never silent, on any path: the record stays
CLOSING with a note, a ``close_failed`` event and a ``tether.session.close_failed``
warning say so, and a later close or ``reconcile()`` finishes it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest
import structlog

import tether
from tether import SessionState
from tether.exceptions import ProviderUnavailableError
from tether.testing import FakeBackend, ManualClock


SHIELD = 1.0


def _manager(
    registry: tether.ProviderRegistry,
    backend: FakeBackend,
    clock: ManualClock,
    **options: Any,
) -> tether.SessionManager:
    return tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=clock,
        shield_timeout=SHIELD,
        health_checks=False,
        environ={},
        **options,
    )


def _drain(events: Any) -> list[tether.Event]:
    out = []
    while True:
        try:
            out.append(events.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return out


async def test_exit_reports_each_close_it_could_not_finish(
    tether_registry, tether_fake_backend, tether_clock
):
    """
    On exit, closes held past shield_timeout are each logged by session id,
    provider and remote id, with a close_failed event, and the records stay
    CLOSING with a note (they were dropped silently); the next manager on the
    same store closes them with reconcile() once the service answers.
    """
    store = tether.MemoryStore()
    _, release = tether_fake_backend.gate("close")
    try:
        with structlog.testing.capture_logs() as logs:
            # The subscription outlives the manager, to read what its exit said.
            async with contextlib.AsyncExitStack() as subscription:
                async with _manager(
                    tether_registry, tether_fake_backend, tether_clock, store=store
                ) as manager:
                    sessions = [await manager.create("fake") for _ in range(2)]
                    events = await subscription.enter_async_context(manager.events())
                failed = [
                    e for e in _drain(events) if e.kind is tether.EventKind.CLOSE_FAILED
                ]
    finally:
        release.set()

    assert {e.session.id for e in failed} == {s.id for s in sessions}
    for s in sessions:
        [warning] = [
            e
            for e in logs
            if e["event"] == "tether.session.close_failed"
            and e.get("session_id") == s.id
        ]
        assert warning["log_level"] == "warning"
        assert (warning["provider"], warning["remote_id"]) == ("fake", s.remote_id)
        record = await store.get(s.id)
        assert record is not None
        assert record.state is SessionState.CLOSING
        assert record.error is not None
        assert "did not finish within" in record.error
    assert {s.remote_id for s in sessions} == tether_fake_backend.live_ids()

    async with _manager(
        tether_registry, tether_fake_backend, tether_clock, store=store
    ) as manager:
        await manager.reconcile()
        for s in sessions:
            closed = await manager.get(s.id)
            assert closed.state is SessionState.CLOSED
            assert closed.error is None
    assert set() == tether_fake_backend.live_ids()


async def test_explicit_close_past_the_shield_is_typed_and_noted(
    tether_registry, tether_fake_backend, tether_clock
):
    """
    close() held past shield_timeout raises ProviderUnavailableError, and says
    so in a close_failed event, a warning and the CLOSING record's note (the
    error alone, before); a later close finishes it and drops the note.
    """
    async with _manager(tether_registry, tether_fake_backend, tether_clock) as manager:
        s = await manager.create("fake")
        _, release = tether_fake_backend.gate("close")
        try:
            with structlog.testing.capture_logs() as logs:
                async with manager.events() as events:
                    with pytest.raises(ProviderUnavailableError):
                        await manager.close(s)
                    kinds = [
                        (e.kind, e.session.id) for e in _drain(events) if e.session
                    ]
        finally:
            release.set()

        assert (tether.EventKind.CLOSE_FAILED, s.id) in kinds
        assert [
            e["remote_id"] for e in logs if e["event"] == "tether.session.close_failed"
        ] == [s.remote_id]
        record = await manager.get(s.id)
        assert record.state is SessionState.CLOSING
        assert record.error is not None
        assert s.remote_id in tether_fake_backend.live_ids()

        closed = await manager.close(s.id)
        assert closed.state is SessionState.CLOSED
        assert closed.error is None
        assert s.remote_id not in tether_fake_backend.live_ids()
