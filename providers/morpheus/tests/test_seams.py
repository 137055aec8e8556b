"""
Issue 14 on the v1.14.0 session era: a close never ends a session that is not
the record's; lost answers to reads are plain failures and a lost answer to the
open is resolved through the key's current session; lease mode is refused where
session routes exist; a stale Session object is refused after close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog

import tether
from tether import ProviderRegistry, RetryPolicy, SessionState
from tether.abc import CreateRequest
from tether.exceptions import (
    ConfigError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    SessionClosedError,
)
from tether.testing import Fault
from tether_morpheus import MorpheusProvider

from .conftest import KEY


if TYPE_CHECKING:
    from collections.abc import Callable

    from tether_morpheus.emulator import MorpheusEmulator

MODELS = "/api/v1/models"
OPEN = "/api/v1/session/modelsession"
PING = "/api/v1/session/pingsession"
CLOSE = "/api/v1/session/closesession"
CHAT = "/api/v1/chat/completions"


def _manager(url: str, clock: Any, attempts: int = 2, **config: Any):
    registry = ProviderRegistry(entry_points=False)
    registry.register("morpheus", MorpheusProvider)
    return tether.SessionManager(
        registry=registry,
        config={"morpheus": {"base_url": url, "api_key": KEY, "timeout": 5, **config}},
        retry=RetryPolicy(attempts=attempts, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    )


def _calls(emulator: MorpheusEmulator, path: str) -> list[Any]:
    return [r for r in emulator.requests_log if r[1] == path]


def _drop_answers(emulator: MorpheusEmulator, *paths: str) -> Callable[[], list[str]]:
    """
    Forward the next request to each of *paths*, then drop its answer (once each).
    """
    pending = list(paths)
    dropped: list[str] = []

    def applies(scope: Any) -> bool:
        path = scope.get("path")
        if path in pending:
            pending.remove(path)
            dropped.append(path)
            return True
        return False

    emulator.faults.applies_to = applies
    emulator.faults.rate = 1.0
    emulator.faults.kinds = {Fault.DROP_AFTER}
    return lambda: dropped


# -- 1. a stale close never ends another manager's session ----------------------------


async def test_stale_close_leaves_the_other_managers_session(server, emulator, clock):
    """
    Two managers with their own stores on one key: m1's close of its record,
    after m2 moved the key to its own session, ends nothing on the gateway; the
    closed record and its closed event say the close was skipped, and why.
    """
    async with (
        _manager(server.url, clock) as m1,
        _manager(server.url, clock) as m2,
    ):
        s1 = await m1.create("morpheus", lifetime=600, model="llama-3.3-70b")
        s2 = await m2.create("morpheus", lifetime=600, model="mistral-31-24b")
        assert emulator.active_session_for(KEY) == s2.remote_id
        with structlog.testing.capture_logs() as logs:
            async with m1.events() as events:
                closed = await m1.close(s1)
                event = events.receive_nowait()
        assert closed.state is SessionState.CLOSED
        assert closed.error is not None
        assert closed.error.startswith("close skipped: ")
        assert "holds another session" in closed.error
        assert (await m1.get(s1.id)).error == closed.error
        assert (tether.EventKind.CLOSED, s1.id) == (event.kind, event.session.id)
        assert event.data["reason"] == "close_skipped"
        assert event.detail == closed.error
        [logged] = [e for e in logs if e["event"] == "tether.session.closed"]
        assert logged["reason"] == "close_skipped"
        assert _calls(emulator, CLOSE) == []
        assert emulator.active_session_for(KEY) == s2.remote_id
        assert s2.remote_id in emulator.live_sessions()
        skipped = [e for e in logs if e["event"] == "tether.morpheus.close_skipped"]
        assert skipped
        assert skipped[0]["key_session"] == s2.remote_id
        # m2's own close still works.
        await m2.close(s2)
        assert emulator.active_session_for(KEY) is None
        assert s2.remote_id not in emulator.live_sessions()


# -- 2. lost answers --------------------------------------------------------------------


async def test_lost_models_answer_is_a_plain_failure(server, emulator, clock):
    """
    A dropped answer to the models read at the start of create is retried as a
    plain failure: the session is made, the key is not blocked.
    """
    async with _manager(server.url, clock) as manager:
        dropped = _drop_answers(emulator, MODELS)
        s = await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        assert dropped() == [MODELS]
        assert s.state is SessionState.ACTIVE
        assert s.remote_id == emulator.active_session_for(KEY)
        assert len(_calls(emulator, OPEN)) == 1


async def test_lost_models_answer_is_not_unknown(provider, emulator):
    """
    The provider itself turns a lost read into ProviderUnavailableError (not
    OutcomeUnknownError), and opens nothing.
    """
    await provider.mode()
    _drop_answers(emulator, MODELS)
    request = CreateRequest(
        tether_id="t1", params={"model": "llama-3.3-70b"}, lifetime=600.0
    )
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.create(request)
    assert not isinstance(info.value, OutcomeUnknownError)
    assert _calls(emulator, OPEN) == []


async def test_lost_open_answer_is_adopted(server, emulator, clock):
    """
    A dropped answer to the open: the manager finds the key's session and
    adopts it instead of opening another.
    """
    async with _manager(server.url, clock) as manager:
        dropped = _drop_answers(emulator, OPEN)
        s = await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        assert dropped() == [OPEN]
        assert s.state is SessionState.ACTIVE
        assert s.remote_id == emulator.active_session_for(KEY)
        assert len(_calls(emulator, OPEN)) == 1
        reply = await manager.provider("morpheus").chat(
            s, [{"role": "user", "content": "hi"}]
        )
        assert reply.choices
        await manager.close(s)
        assert emulator.live_sessions() == []


async def test_reconcile_adopts_a_lost_open(server, emulator, clock):
    """
    Without retries a lost open answer leaves the record CREATING (outcome
    unknown), and reconcile(grace=0) adopts the key's session.
    """
    async with _manager(server.url, clock, attempts=1) as manager:
        _drop_answers(emulator, OPEN)
        with pytest.raises(tether.exceptions.ProviderError):
            await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        (record,) = await manager.list()
        assert record.state is SessionState.CREATING
        report = await manager.reconcile(grace=0)
        assert [a.kind for a in report.actions] == ["adopted"]
        adopted = await manager.get(record.id)
        assert adopted.state is SessionState.ACTIVE
        assert adopted.remote_id == emulator.active_session_for(KEY)
        assert len(_calls(emulator, OPEN)) == 1


async def test_models_lookup_is_cached(server, emulator, clock):
    """
    A second create by the same model costs one request: the open.
    """
    async with _manager(server.url, clock) as manager:
        s = await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        await manager.close(s)
        before = len(emulator.requests_log)
        s = await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        assert [r[1] for r in emulator.requests_log[before:]] == [OPEN]
        assert len(_calls(emulator, MODELS)) == 1


# -- 3. lease mode forced on a gateway with session routes ---------------------------


async def test_forced_lease_mode_is_refused_on_v1_14(server, emulator, clock):
    """
    mode="lease" on v1.14.0 fails at create, naming the option; nothing is
    opened and no chat is sent.
    """
    async with _manager(server.url, clock, mode="lease") as manager:
        with pytest.raises(ConfigError, match="mode='lease'"):
            await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        (record,) = await manager.list()
        assert record.state is SessionState.FAILED
    assert _calls(emulator, CHAT) == []
    assert _calls(emulator, OPEN) == []
    assert emulator.live_sessions() == []


# -- 4. a stale Session object after close -------------------------------------------


async def test_chat_on_a_stale_session_object_is_refused(server, emulator, clock):
    """
    The Session returned before close() still says ACTIVE: chat refuses it
    without a request.
    """
    async with _manager(server.url, clock) as manager:
        s = await manager.create("morpheus", lifetime=600, model="llama-3.3-70b")
        await manager.close(s)
        assert s.state is SessionState.ACTIVE  # the caller's old object
        before = len(_calls(emulator, CHAT))
        with pytest.raises(SessionClosedError):
            await manager.provider("morpheus").chat(
                s, [{"role": "user", "content": "hi"}]
            )
        assert len(_calls(emulator, CHAT)) == before


# -- 5. emulator fidelity ---------------------------------------------------------------


async def test_model_session_reply_has_no_note(client, emulator):
    """
    The real v1.14.0 model-session reply has no ``note`` (even on the fallback key).
    """
    opened = await client.model_session(emulator.model_id("llama-3.3-70b"))
    assert opened.note is None
