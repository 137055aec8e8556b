"""
Issue 14 on the v1.14.0 session era: a close never ends a session that is not
the record's; lost answers to reads are plain failures and a lost answer to the
open is resolved through the key's current session; lease mode is refused where
session routes exist; a stale Session object is refused after close.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
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


# The v1.14.0 texts and shapes below are read from the gateway's source at the
# v1.14.0 tag (src/main.py, src/dependencies.py, src/api/v1/session/index.py,
# src/api/v1/chat/index.py, src/crud/api_key.py).

INT_PARSING = "Input should be a valid integer, unable to parse string as an integer"
HI = [{"role": "user", "content": "hi"}]


async def test_chat_options_are_validated(http):
    """
    ``n: "abc"`` is refused with pydantic's 422 ``int_parsing`` in the session
    era too, with the full text.
    """
    response = await http.post(CHAT, json={"messages": HI, "n": "abc"})

    assert 422 == response.status_code
    assert response.json()["detail"] == [
        {
            "type": "int_parsing",
            "loc": ["body", "n"],
            "msg": INT_PARSING,
            "input": "abc",
        }
    ]


async def test_bad_session_duration_has_the_full_text(http, emulator):
    """
    A ``sessionDuration`` that is no integer: "..., unable to parse string as an
    integer"; a boolean passes (pydantic's lax mode), as in the real gateway.
    """
    model = emulator.model_id("llama-3.3-70b")
    bad = await http.post(
        OPEN, params={"model_id": model}, json={"sessionDuration": "abc"}
    )
    lax = await http.post(
        OPEN, params={"model_id": model}, json={"sessionDuration": True}
    )

    assert 422 == bad.status_code
    assert bad.json()["detail"] == [
        {
            "type": "int_parsing",
            "loc": ["body", "sessionDuration"],
            "msg": INT_PARSING,
            "input": "abc",
        }
    ]
    assert 200 == lax.status_code


async def test_bid_session_without_private_key_is_a_rewrapped_500(http, emulator):
    """
    No private key and no fallback: the bid route's ``except Exception`` re-wraps
    the 400, so the answer is 500 "Unexpected error: 400: ..."; nothing opens.
    """
    emulator.private_key_fallback = False
    bid = emulator.bids_for("llama-3.3-70b")[0]

    response = await http.post(
        "/api/v1/session/bidsession", params={"bid_id": bid}, json={}
    )

    assert 500 == response.status_code
    assert response.json() == {
        "detail": "Unexpected error: 400: No private key found and no fallback key configured"
    }
    assert emulator.onchain_open_sessions() == []


async def test_approve_without_private_key_message(http, emulator):
    """
    ``approve`` without a key or fallback: HTTP 200 with the real message.
    """
    emulator.private_key_fallback = False

    response = await http.post("/api/v1/session/approve", params={"amount": 10})

    assert 200 == response.status_code
    assert response.json() == {
        "error": {
            "message": "No private key found and no fallback key configured. "
            "Please set up your private key.",
            "type": "PrivateKeyNotFound",
        }
    }


async def test_dead_ping_error_is_httpx_status_text(http, emulator):
    """
    A dead ping's ``error`` is ``str()`` of httpx's HTTPStatusError for the
    node's 500 on the gateway's ``PROXY_ROUTER_URL``: the node's reason is not in it.
    """
    model = emulator.model_id("llama-3.3-70b")
    opened = (await http.post(OPEN, params={"model_id": model}, json={})).json()
    emulator.kill_session(opened["session_id"])

    ping = (await http.post(PING)).json()

    assert ping["status"] == "dead"
    assert ping["error"] == (
        "Server error '500 Internal Server Error' for url "
        "'http://localhost:8082/v1/chat/completions'\n"
        "For more information check: "
        "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/500"
    )


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer nope", "Bearer " + KEY[:-4] + "0000"],
    ids=["missing", "format", "secret"],
)
@pytest.mark.parametrize("path", [CHAT, PING])
async def test_every_api_key_401_challenges(server, path, authorization):
    """
    Chat and session routes answer every API-key 401 with ``WWW-Authenticate: Bearer``.
    """
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=server.url) as raw:
        response = await raw.post(path, json={"messages": HI}, headers=headers)

    assert 401 == response.status_code
    assert "Bearer" == response.headers["www-authenticate"]


async def test_streams_carry_cache_control_and_connection(http, emulator):
    """
    Chat streams, answers and in-band errors alike, carry ``Cache-Control:
    no-cache`` and ``Connection: keep-alive``.
    """
    model = emulator.model_id("llama-3.3-70b")
    answered = await http.post(
        CHAT, json={"messages": HI, "model": model, "stream": True}
    )
    emulator.kill_session(emulator.active_session_for(KEY))
    failed = await http.post(
        CHAT,
        json={
            "messages": HI,
            "stream": True,
            "session_id": emulator.active_session_for(KEY),
        },
    )

    assert '"error"' in failed.text
    for response in (answered, failed):
        assert 200 == response.status_code
        assert "no-cache" == response.headers["cache-control"]
        assert "keep-alive" == response.headers["connection"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", MODELS, 200), ("POST", CHAT, 422), ("GET", "/nowhere", 404)],
)
async def test_every_answer_has_vary_and_process_time(http, method, path, status):
    """
    The gateway's middleware tags every answer: ``Vary: Origin`` and
    ``X-Process-Time`` (seconds, a float).
    """
    response = await http.request(method, path, json={})

    assert status == response.status_code
    assert "Origin" == response.headers["vary"]
    assert float(response.headers["x-process-time"]) >= 0


async def test_timestamps_are_naive_utc(server, emulator):
    """
    ``DateTime`` columns come back without a zone (naive UTC); keys made by
    ``POST /auth/keys`` are not marked default, not even a user's first.
    """
    emulator.add_user("new@example.com", "password123")
    token = emulator.issue_token("new@example.com")
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}
    ) as raw:
        made = await raw.post("/api/v1/auth/keys", json={"name": "first"})
        keys = (await raw.get("/api/v1/auth/keys")).json()
        settings = (await raw.get("/api/v1/automation/settings")).json()
        health = (await raw.get("/health")).json()

    assert 200 == made.status_code
    assert [k["is_default"] for k in keys] == [False]
    stamps = [
        keys[0]["created_at"],
        settings["created_at"],
        settings["updated_at"],
        health["timestamp"],
    ]
    for stamp in stamps:
        assert datetime.fromisoformat(stamp).tzinfo is None, stamp


async def test_cleanup_closes_expired_sessions(http, emulator, clock):
    """
    The gateway's cleanup runs every 60 s: a session past its expiry is closed
    on chain at the next round (not early), after which ping says
    ``no_session``, close finds nothing and a chat on the session fails.
    """
    model = emulator.model_id("llama-3.3-70b")
    opened = (
        await http.post(OPEN, params={"model_id": model}, json={"sessionDuration": 60})
    ).json()
    session_id = opened["session_id"]

    await clock.advance(90)  # expired at 60; the round at 60 was not past it
    assert emulator.active_session_for(KEY) == session_id
    await clock.advance(40)  # the round at 120 closed it

    assert emulator.active_session_for(KEY) is None
    ping = (await http.post(PING)).json()
    closed = (await http.post(CLOSE)).json()
    chat = await http.post(CHAT, json={"messages": HI, "session_id": session_id})

    assert ping["status"] == "no_session"
    assert closed == {
        "success": True,
        "message": "No active session found to close",
        "session_id": None,
    }
    assert 500 == chat.status_code
    assert emulator.locked_stakes == []


async def test_ping_before_the_cleanup_round_says_expired(http, emulator, clock):
    """
    Between expiry and the next cleanup round, ping still says ``expired``.
    """
    model = emulator.model_id("llama-3.3-70b")
    await http.post(OPEN, params={"model_id": model}, json={"sessionDuration": 60})
    await clock.advance(90)

    ping = (await http.post(PING)).json()

    assert ping["status"] == "expired"
