"""
Every MorpheusClient call against the v1.14.0 emulator over a real socket,
including error shapes, auth failures and the gateway's HTTP-200 failures.
"""

from __future__ import annotations

import httpx
import pytest

from tether import Secret
from tether.exceptions import (
    AuthError,
    ConfigError,
    OutcomeUnknownError,
    PermanentProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
)
from tether.testing import Fault
from tether_morpheus import MorpheusClient, PingStatus, join_content
from tether_morpheus.emulator import model_id_for

from .conftest import KEY, OTHER_KEY, make_http


LLAMA = model_id_for("llama-3.3-70b")
MISTRAL = model_id_for("mistral-31-24b")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
]


# -- service and models ---------------------------------------------------------


async def test_root_and_health(client):
    """
    ``GET /`` and ``GET /health`` answer JSON objects in v1.14.0's shapes
    (``src/main.py``); health names the version.
    """
    root = await client.root()
    health = await client.health()

    assert set(root) == {"name", "version", "description", "documentation"}
    assert root["documentation"] == {"swagger_ui": "/docs"}
    assert health["status"] == "ok"
    assert health["version"] == "1.14.0"
    assert set(health) == {
        "status",
        "timestamp",
        "version",
        "database",
        "model_service",
        "container",
        "uptime",
    }
    assert set(health["container"]) == {"id", "system", "python_version"}
    assert set(health["uptime"]) == {"seconds", "human_readable", "started_at"}


async def test_models_have_names_and_hex_ids(client):
    """
    ``/models`` maps ``id`` (the name) and ``blockchainID`` (the hex id).
    """
    models = await client.models()

    by_name = {m.name: m for m in models}
    assert by_name["llama-3.3-70b"].blockchain_id == LLAMA
    assert by_name["text-embedding-bge-m3"].model_type == "EMBEDDINGS"


async def test_all_models_includes_inactive(emulator, client):
    """
    ``/models/allmodels`` lists non-deleted models the active list leaves out.
    """
    emulator.add_model("hidden-model", active=False)

    active = {m.name for m in await client.models()}
    every = {m.name for m in await client.all_models()}

    assert "hidden-model" not in active
    assert "hidden-model" in every


async def test_rated_bids_best_first_with_prices(client, server):
    """
    Rated bids come best score first, with the price per second and provider.
    """
    bids = await client.rated_bids(LLAMA)

    assert [b.score for b in bids] == sorted((b.score for b in bids), reverse=True)
    assert bids[0].price_per_second == 10_000_000_000
    assert bids[0].provider.startswith("0x")
    assert bids[0].cost(600) == 6_000_000_000_000
    assert server.requests[-1].query == f"model_id={LLAMA}"


async def test_rated_bids_unknown_model_uses_inner_status(client):
    """
    ``Error fetching rated bids: HTTP 400: ...`` wrapped in a 500 is classified by
    the proxy's own status: a permanent RequestRejectedError.
    """
    with pytest.raises(RequestRejectedError) as info:
        await client.rated_bids("0x" + "0" * 64)

    assert "Error fetching rated bids" in str(info.value)
    assert info.value.status_code == 500


# -- sessions ---------------------------------------------------------------------


async def test_model_session_sends_exact_names(emulator, client):
    """
    ``modelsession`` sends ``model_id`` in the query and the camelCase body.
    """
    opened = await client.model_session(
        LLAMA, session_duration=600, direct_payment=True, failover=True
    )

    method, path, query, body = emulator.requests_log[-1]
    assert (method, path, query) == (
        "POST",
        "/api/v1/session/modelsession",
        f"model_id={LLAMA}",
    )
    assert body == {"sessionDuration": 600, "directPayment": True, "failover": True}
    assert opened.session_id.startswith("0x")
    assert opened.model == LLAMA
    assert opened.api_key_prefix == KEY[:9]


async def test_model_session_same_model_returns_existing(client):
    """
    A second modelsession on the same model returns the key's existing session.
    """
    first = await client.model_session(LLAMA, session_duration=600)
    second = await client.model_session(LLAMA, session_duration=900)

    assert first.session_id == second.session_id


async def test_bid_session_has_no_model_field(emulator, client):
    """
    ``bidsession`` answers without ``model`` and sends ``bid_id`` in the query.
    """
    bid = emulator.bids_for("llama-3.3-70b")[1]

    opened = await client.bid_session(bid, session_duration=300)

    assert opened.model is None
    assert emulator.requests_log[-1][2] == f"bid_id={bid}"
    assert emulator.active_session_for(KEY) == opened.session_id


async def test_second_bid_session_leaks_the_first_on_chain(emulator, client):
    """
    As on v1.14.0, a second bid session forgets the first without closing it.
    """
    bids = emulator.bids_for("llama-3.3-70b")
    first = await client.bid_session(bids[0], session_duration=300)
    second = await client.bid_session(bids[1], session_duration=300)

    assert emulator.active_session_for(KEY) == second.session_id
    assert first.session_id in emulator.onchain_open_sessions()


async def test_unknown_bid_is_rejected(client):
    """
    An unknown bid arrives as a 500 proxy error and maps to a typed error.
    """
    with pytest.raises(PermanentProviderError) as info:
        await client.bid_session("0x" + "1" * 64)

    assert info.value.status_code == 500


async def test_model_session_all_providers_refuse(emulator, client):
    """
    ``no provider accepting session`` (a re-wrapped 500) is transient.
    """
    for bid in emulator.bids_for("mistral-31-24b"):
        emulator.fail_provider(emulator.bid_provider(bid))

    with pytest.raises(ProviderUnavailableError) as info:
        await client.model_session(MISTRAL)

    assert "no provider accepting session" in str(info.value)


async def test_session_body_missing_is_422(http):
    """
    modelsession without a body answers 422 ``loc: ["body"]`` -> RequestRejectedError.
    """
    client = MorpheusClient(http)
    response = await http.post(
        "/api/v1/session/modelsession", params={"model_id": LLAMA}
    )
    error = client._send  # the raw shape first, then the mapping

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    with pytest.raises(RequestRejectedError) as info:
        await error(
            "POST",
            "/api/v1/session/modelsession",
            params={"model_id": LLAMA},
            operation="create",
        )
    assert info.value.code == "validation_error"
    assert "body" in str(info.value)


async def test_no_private_key_without_fallback_is_rewrapped_400(emulator, client):
    """
    ``No private key found`` is a permanent error, not a retryable 5xx.
    """
    emulator.private_key_fallback = False

    with pytest.raises(PermanentProviderError) as info:
        await client.model_session(LLAMA)

    assert not info.value.retryable
    assert "No private key found" in str(info.value)


async def test_close_session_variants(client, clock):
    """
    closesession: none held, closed, and expired (marked inactive only).
    """
    nothing = await client.close_session()
    opened = await client.model_session(LLAMA, session_duration=120)
    closed = await client.close_session()
    await client.model_session(MISTRAL, session_duration=60)
    await clock.advance(61)
    expired = await client.close_session()

    assert not nothing.had_session
    assert closed.session_id == opened.session_id
    assert closed.message == "Session closed successfully"
    assert expired.message == "Expired session marked as inactive"


async def test_close_failure_is_transient(emulator, client):
    """
    ``Error closing session: 500: Failed to close session`` is transient.
    """
    await client.model_session(LLAMA)
    emulator.close_fails = True

    with pytest.raises(ProviderUnavailableError):
        await client.close_session()


async def test_ping_statuses(emulator, client, clock):
    """
    pingsession is always HTTP 200: alive, dead, expired, no_session and error.
    """
    none = await client.ping_session()
    opened = await client.model_session(LLAMA, session_duration=300)
    alive = await client.ping_session()
    emulator.kill_session(opened.session_id)
    dead = await client.ping_session()
    await client.model_session(LLAMA, session_duration=60)
    await clock.advance(61)
    expired = await client.ping_session()
    emulator.ping_error = "database unavailable"
    error = await client.ping_session()

    assert none.status is PingStatus.NO_SESSION
    assert alive.status is PingStatus.ALIVE
    assert alive.session_id == opened.session_id
    assert dead.status is PingStatus.DEAD
    # v1.14.0 reports httpx's status error; the node's reason is never read.
    assert "Server error '500 Internal Server Error' for url" in (dead.error or "")
    assert expired.status is PingStatus.EXPIRED
    assert error.status is PingStatus.ERROR


async def test_ping_spends_inference(emulator, client):
    """
    A ping on a live session costs one inference, as the real gateway's does.
    """
    await client.model_session(LLAMA)
    before = emulator.inference_count

    await client.ping_session()

    assert emulator.inference_count == before + 1


async def test_approve_success_and_in_band_errors(emulator, client):
    """
    approve: a tx on success; HTTP 200 ``{"error": ...}`` raises a typed error.
    """
    ok = await client.approve(1000)
    emulator.approve_error = ("execution reverted: insufficient balance", "ProxyError")
    with pytest.raises(PermanentProviderError) as failed:
        await client.approve(1000)
    emulator.approve_error = None
    emulator.private_key_fallback = False
    with pytest.raises(PermanentProviderError) as no_key:
        await client.approve(1000)

    assert ok.tx is not None
    assert ok.tx.startswith("0x")
    assert emulator.allowance() == 1000
    assert failed.value.status_code == 200
    assert failed.value.code == "ProxyError"
    assert no_key.value.code == "PrivateKeyNotFound"


async def test_approve_amount_is_required(http):
    """
    approve without ``amount`` is a 422 with the pydantic shape.
    """
    response = await http.post("/api/v1/session/approve")

    detail = response.json()["detail"][0]
    assert response.status_code == 422
    assert (detail["type"], detail["loc"]) == ("missing", ["query", "amount"])


# -- chat --------------------------------------------------------------------------


async def test_chat_json_on_session(client):
    """
    A JSON completion on an explicit session_id echoes deterministically.
    """
    opened = await client.model_session(LLAMA)

    reply = await client.chat_completions(
        [{"role": "user", "content": "hello there"}],
        session_id=opened.session_id,
        max_tokens=5,
    )

    assert reply.content == "echo: hello there"
    assert reply.model == "llama-3.3-70b"
    assert reply.choices[0].finish_reason == "stop"


async def test_chat_tools_json_and_stream(client):
    """
    With tools, the answer is a tool call, in JSON and in the stream.
    """
    opened = await client.model_session(LLAMA)
    messages = [{"role": "user", "content": "weather in Oslo"}]

    reply = await client.chat_completions(
        messages, session_id=opened.session_id, tools=TOOLS, tool_choice="auto"
    )
    stream = await client.stream_chat_completions(
        messages, session_id=opened.session_id, tools=TOOLS
    )
    async with stream:
        chunks = [c async for c in stream]

    assert reply.tool_calls[0].name == "get_weather"
    assert reply.choices[0].finish_reason == "tool_calls"
    streamed = [t for c in chunks for ch in c.choices for t in ch.message.tool_calls]
    assert streamed[0].name == "get_weather"
    assert chunks[-1].finish_reason == "tool_calls"


async def test_chat_stream_chunks(client):
    """
    The SSE stream yields typed chunks that join to the text, then ends at [DONE].
    """
    opened = await client.model_session(LLAMA)

    stream = await client.stream_chat_completions(
        [{"role": "user", "content": "one two three"}], session_id=opened.session_id
    )
    async with stream:
        chunks = [c async for c in stream]

    assert join_content(chunks) == "echo: one two three"
    assert stream.done


async def test_chat_on_dead_session_json(emulator, client):
    """
    Non-stream chat on a session the node lost: 500 ``session not found`` ->
    RemoteNotFoundError.
    """
    opened = await client.model_session(LLAMA)
    emulator.kill_session(opened.session_id)

    with pytest.raises(RemoteNotFoundError) as info:
        await client.chat_completions(
            [{"role": "user", "content": "x"}], session_id=opened.session_id
        )

    assert info.value.code == "session_not_found"
    assert info.value.status_code == 500


async def test_chat_stream_in_band_error(emulator, client, clock):
    """
    Streaming on an expired session: HTTP 200 with ``data: {"error": ...}`` raises
    RemoteNotFoundError (code ``session_expired``) while iterating.
    """
    opened = await client.model_session(LLAMA, session_duration=60)
    # Past EndsAt + 5 s, before the gateway's cleanup round at 120 s closes it.
    await clock.advance(90)

    stream = await client.stream_chat_completions(
        [{"role": "user", "content": "x"}], session_id=opened.session_id
    )

    async def drain():
        async with stream:
            async for _ in stream:
                pass

    with pytest.raises(RemoteNotFoundError) as info:
        await drain()

    assert info.value.code == "session_expired"
    assert info.value.status_code == 200


async def test_chat_without_session_uses_automation(emulator, client):
    """
    Chat without session_id opens an automated session for the key (v1.14.0).
    """
    reply = await client.chat_completions(
        [{"role": "user", "content": "hi"}], model="llama-3.3-70b"
    )

    assert reply.content == "echo: hi"
    assert emulator.active_session_for(KEY) is not None


async def test_chat_automation_disabled_is_403(emulator, client):
    """
    Automation disabled: chat without a session answers 403 -> permanent error.
    """
    emulator.automation_feature_enabled = False

    with pytest.raises(PermanentProviderError) as info:
        await client.chat_completions([{"role": "user", "content": "hi"}])

    assert info.value.code == "automation_disabled"
    assert info.value.status_code == 403


async def test_chat_validation_422(client):
    """
    A message without ``role`` is refused with 422 -> RequestRejectedError.
    """
    with pytest.raises(RequestRejectedError) as info:
        await client.chat_completions([{"content": "no role"}])

    assert info.value.status_code == 422
    assert "role" in str(info.value)


async def test_chat_bad_options_send_nothing(client, server):
    """
    Unknown chat options and empty messages are refused locally.
    """
    before = len(server.requests)

    with pytest.raises(ConfigError):
        await client.chat_completions([{"role": "user", "content": "x"}], bogus=1)
    with pytest.raises(ConfigError):
        await client.chat_completions([])

    assert len(server.requests) == before


async def test_revoked_key_still_opens_sessions_but_not_chat(emulator, server):
    """
    v1.14.0: a revoked key still works on session routes but chat refuses it.
    """
    token = emulator.issue_token()
    async with make_http(server, OTHER_KEY) as http:
        client = MorpheusClient(http, access_token=Secret(token))
        keys = await client.api_keys()
        other = next(k for k in keys if k.key_prefix == OTHER_KEY[:9])
        await client.delete_api_key(other.id)

        opened = await client.model_session(LLAMA)
        with pytest.raises(AuthError):
            await client.chat_completions(
                [{"role": "user", "content": "x"}], session_id=opened.session_id
            )

    assert opened.session_id.startswith("0x")


# -- auth failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "API key missing"),
        ("Bearer pk-nope", "Invalid API key format. Must start with sk-"),
        ("Bearer sk-nope00.wrong", "Invalid API key"),
        (f"Bearer {KEY[:10]}wrong-secret", "Invalid API key"),
        (f"{KEY[:10]}wrong-secret", "Invalid API key"),
    ],
)
async def test_auth_failures(server, header, detail):
    """
    Missing, malformed and wrong keys answer 401 with the gateway's detail.
    """
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        raw = await http.post("/api/v1/session/pingsession")
        with pytest.raises(AuthError) as info:
            await MorpheusClient(http).ping_session()

    assert raw.status_code == 401
    assert raw.json() == {"detail": detail}
    assert info.value.status_code == 401
    if header is None:
        assert raw.headers["www-authenticate"] == "Bearer"


async def test_key_without_user(emulator, client):
    """
    A key whose user is gone: 401 ``API key not associated with a valid user``.
    """
    emulator.drop_user("user@example.com")

    with pytest.raises(AuthError) as info:
        await client.ping_session()

    assert "not associated with a valid user" in str(info.value)


async def test_legacy_key_is_prefix_only(emulator, server):
    """
    A legacy key (no encrypted_key) authenticates by its 9-character prefix.
    """
    user = 1
    legacy = emulator.add_api_key(user, "sk-Legacy.aaaa", legacy=True)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {legacy[:9]}.anything"}
    ) as http:
        result = await MorpheusClient(http).ping_session()

    assert result.status is PingStatus.NO_SESSION


async def test_auth_error_never_shows_the_key(server):
    """
    A 401 from a wrong key never carries the key in the error text.
    """
    wrong = "sk-Wrong1.ffffffffffffffffffffffffffffffff"
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {wrong}"}
    ) as http:
        with pytest.raises(AuthError) as info:
            await MorpheusClient(http).close_session()

    assert wrong not in str(info.value)
    assert wrong not in repr(info.value.body)


# -- automation ----------------------------------------------------------------------------


async def test_automation_get_and_put(emulator, client):
    """
    GET creates the settings disabled; PUT changes them (JWT routes).
    """
    client.access_token = Secret(emulator.issue_token())

    first = await client.automation_settings()
    changed = await client.update_automation_settings(
        is_enabled=True, session_duration=900
    )
    again = await client.automation_settings()

    assert first.is_enabled is False
    assert first.session_duration == 3600
    assert (changed.is_enabled, changed.session_duration) == (True, 900)
    assert again.session_duration == 900
    assert again.user_id == 1


@pytest.mark.parametrize(
    ("duration", "message"),
    [(59, "at least 60 seconds"), (86401, "cannot exceed 86400")],
)
async def test_automation_bounds(emulator, client, duration, message):
    """
    Durations outside 60-86400 s answer 400 -> RequestRejectedError.
    """
    client.access_token = Secret(emulator.issue_token())

    with pytest.raises(RequestRejectedError) as info:
        await client.update_automation_settings(session_duration=duration)

    assert message in str(info.value)


async def test_automation_needs_jwt(client, server, emulator):
    """
    Without a token nothing is sent; with a bad one the gateway answers 401.
    """
    before = len(server.requests)
    with pytest.raises(ConfigError):
        await client.automation_settings()
    assert len(server.requests) == before

    with pytest.raises(AuthError) as info:
        await client.automation_settings(access_token="not.a.jwt")

    assert info.value.status_code == 401


async def test_automation_disabled_system_wide(emulator, client):
    """
    ``AUTOMATION_FEATURE_ENABLED`` off: 400 -> RequestRejectedError.
    """
    emulator.automation_feature_enabled = False
    client.access_token = Secret(emulator.issue_token())

    with pytest.raises(RequestRejectedError) as info:
        await client.automation_settings()

    assert "disabled system-wide" in str(info.value)


# -- auth and account ---------------------------------------------------------------------------


async def test_register_login_refresh(client):
    """
    Register (201), log in, and refresh: tokens are Secrets, masked in reprs.
    """
    user = await client.register(
        email="new@example.com", password="longenough1", name="New"
    )
    tokens = await client.login(email="new@example.com", password=Secret("longenough1"))
    refreshed = await client.refresh(tokens.refresh_token)

    assert user.email == "new@example.com"
    assert user.id > 0
    assert tokens.token_type == "bearer"
    assert tokens.access_token.reveal() not in repr(tokens)
    assert refreshed.access_token != tokens.access_token
    assert client.access_token == refreshed.access_token


async def test_register_duplicate_and_short_password(client, server):
    """
    A duplicate email is a 400; a short password is refused locally.
    """
    with pytest.raises(RequestRejectedError) as dup:
        await client.register(email="user@example.com", password="password123")
    before = len(server.requests)
    with pytest.raises(ConfigError):
        await client.register(email="x@example.com", password="short")

    assert "already exists" in str(dup.value)
    assert len(server.requests) == before


async def test_login_wrong_password(client):
    """
    Wrong credentials: 401 ``Incorrect email or password`` -> AuthError, no secret shown.
    """
    with pytest.raises(AuthError) as info:
        await client.login(email="user@example.com", password="wrong-password-9")

    assert "Incorrect email or password" in str(info.value)
    assert "wrong-password-9" not in str(info.value)


async def test_refresh_with_access_token_fails(emulator, client):
    """
    An access token is not a refresh token: 401.
    """
    with pytest.raises(AuthError):
        await client.refresh(emulator.issue_token())


async def test_api_keys_list_create_delete(emulator, client, server):
    """
    Keys: list (no secrets), create (key shown once, as a Secret), delete (inactive).
    """
    client.access_token = Secret(emulator.issue_token())

    created = await client.create_api_key(name="ci")
    listed = await client.api_keys()
    mine = next(k for k in listed if k.key_prefix == created.key_prefix)
    deleted = await client.delete_api_key(mine.id)
    with pytest.raises(RemoteNotFoundError):
        await client.delete_api_key(9999)

    assert created.key.reveal().startswith(created.key_prefix)
    assert created.key.reveal() not in repr(created)
    assert mine.name == "ci"
    assert deleted.is_active is False
    async with make_http(server, created.key.reveal()) as http:
        with pytest.raises(AuthError):
            await MorpheusClient(http).chat_completions(
                [{"role": "user", "content": "x"}]
            )


async def test_private_key_store_status_delete(emulator, client):
    """
    The wallet key is stored, reported only as a status, then deleted.
    """
    client.access_token = Secret(emulator.issue_token())
    private = "0x" + "ab" * 32

    empty = await client.private_key_status()
    stored = await client.store_private_key(Secret(private))
    status = await client.private_key_status()
    await client.delete_private_key()
    with pytest.raises(RemoteNotFoundError):
        await client.delete_private_key()

    assert empty.has_key is False
    assert stored["success"] is True
    assert status.has_key is True
    assert private not in repr(stored)


async def test_delegations(emulator, client):
    """
    Delegations: store, list (skip/limit), active, delete (204), then none active.
    """
    client.access_token = Secret(emulator.issue_token())

    made = await client.store_delegation(
        delegate_address="0x" + "1" * 40, signed_delegation_data="signed-blob"
    )
    listed = await client.delegations(skip=0, limit=10)
    active = await client.active_delegation()
    await client.delete_delegation(made.id)
    after = await client.active_delegation()

    assert [d.id for d in listed] == [made.id]
    assert active is not None
    assert active.id == made.id
    assert "signed-blob" not in repr(made)
    assert after is None
    assert emulator.requests_log[-4][2] == "skip=0&limit=10"


async def test_delete_account(emulator, client):
    """
    Deleting the account removes its keys: the API key stops working.
    """
    client.access_token = Secret(emulator.issue_token())
    await client.model_session(LLAMA)

    result = await client.delete_account()

    assert result["deleted_data"]["api_keys"] == 2
    assert result["deleted_data"]["sessions"] == 1
    with pytest.raises(AuthError):
        await client.ping_session()


# -- transport faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.SERVER_ERROR, ProviderUnavailableError),
        (Fault.RATE_LIMIT, RateLimitedError),
        (Fault.DROP, OutcomeUnknownError),
        (Fault.MALFORMED, ProviderUnavailableError),
    ],
)
async def test_faults_are_classified(emulator, client, fault, error):
    """
    Injected 503, 429, dropped connections and non-JSON bodies map to typed errors.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [fault]

    with pytest.raises(error):
        await client.models()


async def test_unreachable_gateway(server):
    """
    A closed port is ProviderUnavailableError (the request never left).
    """
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=2) as http:
        with pytest.raises(ProviderUnavailableError) as info:
            await MorpheusClient(http).health()

    assert not isinstance(info.value, OutcomeUnknownError)


async def test_detect_session_routes(emulator, client, server):
    """
    Session routes are detected from the OpenAPI document or, without one, from
    a probe that the real route refuses with 422 before acting.
    """
    with_routes = await client.has_session_routes()
    emulator.session_endpoints = False
    without = await client.has_session_routes()
    emulator.serve_openapi = False
    probed = await client.has_session_routes()
    emulator.session_endpoints = True
    probed_with = await client.has_session_routes()

    assert (with_routes, without, probed, probed_with) == (True, False, False, True)
    assert emulator.active_session_for(KEY) is None
