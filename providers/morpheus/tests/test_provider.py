"""
MorpheusProvider used directly over the emulator: parameters, create by model
name, hex id and bid, approvals, ping mapping, close, chat, failover candidates,
gateway-mode detection (sessions and lease), and secrets.
"""

from __future__ import annotations

import httpx
import pytest
import structlog

from tether import HealthStatus, Session, SessionState
from tether.abc import CreateRequest
from tether.exceptions import (
    ConfigError,
    InvalidParameterError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    RequestRejectedError,
    SessionClosedError,
)
from tether.testing import serve_asgi
from tether_morpheus import MorpheusConfig, MorpheusProvider, join_content
from tether_morpheus.emulator import MorpheusEmulator, model_id_for

from .conftest import KEY, make_http


LLAMA = model_id_for("llama-3.3-70b")


def as_session(remote, tether_id="t-1", state=SessionState.ACTIVE):
    """
    The Session the manager would store for a RemoteSession.
    """
    return Session(
        id=tether_id,
        provider="morpheus",
        state=state,
        remote_id=remote.id,
        raw_state=remote.raw_state,
        data=remote.data,
    )


async def create(provider, lifetime=600, **params):
    """
    Validate then create, as the manager does.
    """
    parsed = provider.parse_create(params)
    life = provider.lifetime_for(lifetime, parsed)
    remote = await provider.create(
        CreateRequest(tether_id="t-1", params=parsed, lifetime=life)
    )
    return remote, as_session(remote)


# -- configuration and parameters ---------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "sk-short.x",
        "pk-AbC123.secret",
        "sk-AbC123",
        "sk-AbC123.",
        "sk-AbC12!.secret",
        f"Bearer {KEY}",
    ],
)
def test_api_key_format_checked_locally(key):
    """
    Malformed keys raise ConfigError, whose text never contains the key.
    """
    with pytest.raises(ConfigError) as info:
        MorpheusConfig(api_key=key)

    if key:
        assert key not in str(info.value)


def test_config_repr_and_headers_hide_nothing_they_should_not():
    """
    The key is masked in the config's repr and sent only as ``Bearer sk-...``.
    """
    config = MorpheusConfig(api_key=KEY, access_token="jwt.token.value")

    options = MorpheusProvider.client_options(config)

    assert KEY not in repr(config)
    assert "jwt.token.value" not in repr(config)
    assert options.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(options)
    assert config.base_url == "https://api.mor.org"


def test_mode_is_validated():
    """
    ``mode`` accepts only auto, sessions and lease.
    """
    with pytest.raises(ConfigError):
        MorpheusConfig(api_key=KEY, mode="pooled")


def test_credential_is_the_api_key_only():
    """
    Admission counts sessions per API key: a JWT does not change the credential.
    """
    http = httpx.AsyncClient()
    try:
        a = MorpheusProvider(MorpheusConfig(api_key=KEY), client=http, name="morpheus")
        b = MorpheusProvider(
            MorpheusConfig(api_key=KEY, access_token="x.y.z"),
            client=http,
            name="morpheus",
        )
    finally:
        pass

    assert a.credential_id() == b.credential_id()
    assert KEY not in (a.credential_id() or "")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "model"),
        ({"model": "llama-3.3-70b", "bid_id": "0x" + "a" * 64}, "bid_id"),
        ({"model": ""}, "model"),
        ({"model": "0x1234"}, "model"),
        ({"bid_id": "0x12"}, "bid_id"),
        ({"bid_id": 7}, "bid_id"),
        ({"model": "llama-3.3-70b", "approve": -5}, "approve"),
        ({"model": "llama-3.3-70b", "approve": "yes"}, "approve"),
        ({"bid_id": "0x" + "a" * 64, "approve": True}, "approve"),
        ({"model": "llama-3.3-70b", "direct_payment": "no"}, "direct_payment"),
        ({"model": "llama-3.3-70b", "failover": 1}, "failover"),
        ({"model": "llama-3.3-70b", "sessionDuration": 60}, "sessionDuration"),
    ],
)
async def test_bad_params_send_nothing(provider, server, params, field):
    """
    Every bad parameter is refused locally, naming the field, before any request.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.parse_create(params)

    assert info.value.field == field
    assert server.requests == []


@pytest.mark.parametrize("lifetime", [30, 86401])
async def test_lifetime_bounds(provider, lifetime):
    """
    Lifetimes outside 60-86400 s are refused; others round up to whole seconds.
    """
    with pytest.raises(InvalidParameterError):
        provider.lifetime_for(lifetime, {})

    assert provider.lifetime_for(90.2, {}) == 91.0
    assert provider.lifetime_for(None, {}) == 3600.0


# -- create ---------------------------------------------------------------------------


async def test_create_by_model_name(provider, emulator):
    """
    A name is resolved to its hex id, which is what modelsession receives.
    """
    remote, _ = await create(provider, lifetime=600, model="llama-3.3-70b")

    _, path, query, body = emulator.requests_log[-1]
    assert path == "/api/v1/session/modelsession"
    assert query == f"model_id={LLAMA}"
    assert body == {"sessionDuration": 600, "directPayment": False, "failover": False}
    assert remote.id == emulator.active_session_for(KEY)
    assert remote.data["model"] == "llama-3.3-70b"
    assert remote.data["model_id"] == LLAMA
    assert remote.tether_id == "t-1"


async def test_create_by_hex_id(provider, emulator):
    """
    A hex id is checked against the model list and sent as is.
    """
    remote, _ = await create(provider, model=LLAMA.upper().replace("0X", "0x"))

    assert remote.data["model"] == "llama-3.3-70b"
    assert emulator.requests_log[-1][2] == f"model_id={LLAMA}"


@pytest.mark.parametrize("model", ["llama-nope", "0x" + "9" * 64])
async def test_unknown_model_never_falls_back(provider, emulator, model):
    """
    An unknown name or id is a typed error and no session is opened (the gateway
    itself would silently open one on its default model).
    """
    with pytest.raises(RemoteNotFoundError) as info:
        await create(provider, model=model)

    assert info.value.code == "model_not_found"
    assert isinstance(info.value.__cause__, InvalidParameterError)
    assert all("session/" not in path for _, path, _, _ in emulator.requests_log)


async def test_resolve_model_raises_invalid_parameter(provider):
    """
    Resolving an unknown model directly is an InvalidParameterError naming the field.
    """
    with pytest.raises(InvalidParameterError) as info:
        await provider.resolve_model("llama-nope")

    assert info.value.field == "model"
    assert "llama-3.3-70b" in (info.value.allowed or "")


async def test_create_by_bid(provider, emulator):
    """
    A bid session passes bid_id and the flags, and records the bid's provider.
    """
    bids = await provider.candidates("llama-3.3-70b")

    remote, _ = await create(
        provider, bid_id=bids[1], direct_payment=True, failover=True
    )

    assert emulator.requests_log[-1][2] == f"bid_id={bids[1]}"
    assert emulator.requests_log[-1][3] == {
        "sessionDuration": 600,
        "directPayment": True,
        "failover": True,
    }
    assert remote.data["provider_address"] == emulator.bid_provider(bids[1])
    assert remote.id == emulator.active_session_for(KEY)


async def test_approve_true_prices_from_rated_bids(server, clock):
    """
    approve=True approves the dearest bid price x duration, then opens.
    """
    emulator = MorpheusEmulator(clock=clock.time, api_keys=[KEY], require_approval=True)
    async with serve_asgi(emulator.app) as srv, make_http(srv) as http:
        provider = MorpheusProvider(
            MorpheusConfig(base_url=srv.url, api_key=KEY, mode="sessions"),
            client=http,
            name="morpheus",
        )
        with pytest.raises(ProviderUnavailableError):
            await create(provider, lifetime=100, model="llama-3.3-70b")
        remote, _ = await create(
            provider, lifetime=100, model="llama-3.3-70b", approve=True
        )

    assert remote.data["approved"] == 12_000_000_000 * 100
    assert remote.data["approval_tx"].startswith("0x")
    assert emulator.allowance() == 12_000_000_000 * 100 - 10_000_000_000 * 100


async def test_approve_amount_with_bid(provider, emulator):
    """
    With bid_id, an explicit amount is approved before the session opens.
    """
    bid = (await provider.candidates("mistral-31-24b"))[0]

    await create(provider, bid_id=bid, approve=12345)

    paths = [(p, q) for _, p, q, _ in emulator.requests_log[-2:]]
    assert paths[0] == ("/api/v1/session/approve", "amount=12345")
    assert paths[1][0] == "/api/v1/session/bidsession"


async def test_failed_approval_stops_create(provider, emulator):
    """
    approve's HTTP-200 error object fails the create before any session opens.
    """
    emulator.approve_error = ("execution reverted", "ProxyError")

    with pytest.raises(Exception) as info:
        await create(provider, model="llama-3.3-70b", approve=True)

    assert "execution reverted" in str(info.value)
    assert emulator.active_session_for(KEY) is None


# -- ping ----------------------------------------------------------------------------------


async def test_ping_alive_then_dead(provider, emulator):
    """
    alive -> ALIVE; after the node lost the session, dead -> GONE with the
    gateway's error text (the node's status; v1.14.0 never reads its reason).
    """
    remote, session = await create(provider, model="llama-3.3-70b")

    alive = await provider.ping(session)
    emulator.kill_session(remote.id)
    dead = await provider.ping(session)

    assert alive.status is HealthStatus.ALIVE
    assert alive.raw_state == "alive"
    assert dead.status is HealthStatus.GONE
    assert dead.raw_state == "dead"
    assert "500 Internal Server Error" in (dead.detail or "")


async def test_ping_expired(provider, clock):
    """
    expired -> EXPIRED once sessionDuration has passed on the gateway's clock.
    """
    _, session = await create(provider, lifetime=60, model="llama-3.3-70b")
    await clock.advance(61)

    health = await provider.ping(session)

    assert health.status is HealthStatus.EXPIRED


async def test_ping_no_session_and_error(provider, emulator):
    """
    no_session -> GONE; error -> DEGRADED.
    """
    _, session = await create(provider, model="llama-3.3-70b")
    await provider.close(session)

    gone = await provider.ping(session)
    emulator.ping_error = "db down"
    degraded = await provider.ping(session)

    assert gone.status is HealthStatus.GONE
    assert gone.raw_state == "no_session"
    assert degraded.status is HealthStatus.DEGRADED


async def test_ping_replaced_session_is_gone(provider, emulator):
    """
    When the key now holds another session, ours is GONE even though ping says alive.
    """
    _, session = await create(provider, model="llama-3.3-70b")
    await provider.api.model_session(model_id_for("mistral-31-24b"))

    health = await provider.ping(session)

    assert health.status is HealthStatus.GONE
    assert "another session" in (health.detail or "")


# -- close ------------------------------------------------------------------------------------


async def test_close_is_idempotent(provider, emulator):
    """
    Closing twice succeeds; the session is closed on chain the first time.
    """
    remote, session = await create(provider, model="llama-3.3-70b")

    await provider.close(session)
    await provider.close(session)

    assert emulator.active_session_for(KEY) is None
    assert remote.id not in emulator.onchain_open_sessions()


# -- chat -------------------------------------------------------------------------------------------


async def test_chat_names_the_session(provider, emulator):
    """
    Chat sends the session's id, so the gateway never switches models under it.
    """
    remote, session = await create(provider, model="llama-3.3-70b")

    reply = await provider.chat(
        session, [{"role": "user", "content": "hi"}], temperature=0.2
    )

    assert reply.content == "echo: hi"
    body = emulator.requests_log[-1][3]
    assert body["session_id"] == remote.id
    assert body["temperature"] == 0.2


async def test_chat_stream_on_session(provider):
    """
    stream=True gives an async iterator of typed chunks.
    """
    _, session = await create(provider, model="llama-3.3-70b")

    stream = await provider.chat(
        session, [{"role": "user", "content": "a b"}], stream=True
    )
    async with stream:
        chunks = [c async for c in stream]

    assert join_content(chunks) == "echo: a b"


async def test_chat_on_killed_session(provider, emulator):
    """
    The node's ``session not found`` is a RemoteNotFoundError carrying tether's id.
    """
    remote, session = await create(provider, model="llama-3.3-70b")
    emulator.kill_session(remote.id)

    with pytest.raises(RemoteNotFoundError) as info:
        await provider.chat(session, [{"role": "user", "content": "x"}])

    assert info.value.session_id == "t-1"


async def test_chat_refuses_ended_sessions(provider, server):
    """
    A closed session is refused locally with SessionClosedError.
    """
    remote, _ = await create(provider, model="llama-3.3-70b")
    closed = Session(
        id="t-1",
        provider="morpheus",
        state=SessionState.CLOSED,
        remote_id=remote.id,
        data=remote.data,
    )
    before = len(server.requests)

    with pytest.raises(SessionClosedError):
        await provider.chat(closed, [{"role": "user", "content": "x"}])

    assert len(server.requests) == before


# -- failover candidates ----------------------------------------------------------------------------


async def test_candidates_best_first_skipping_failed(provider, emulator):
    """
    candidates() orders bids by score and skips providers that failed.
    """
    bids = emulator.bids_for("llama-3.3-70b")
    emulator.fail_provider(emulator.bid_provider(bids[0]))

    first = await provider.candidates("llama-3.3-70b")
    with pytest.raises(ProviderUnavailableError):
        await create(provider, bid_id=first[0])
    after = await provider.candidates("llama-3.3-70b")
    excluded = await provider.candidates(
        "llama-3.3-70b", exclude_providers=[emulator.bid_provider(bids[1])]
    )

    assert first == bids
    assert after == bids[1:]
    assert excluded == bids[2:]


async def test_failover_candidates(provider, emulator):
    """
    failover_candidates() lists the bids then the fallback models, as Candidates.
    """
    candidates = await provider.failover_candidates(
        "llama-3.3-70b", fallback_models=["mistral-31-24b"]
    )

    assert [c.params.get("bid_id") for c in candidates[:3]] == emulator.bids_for(
        "llama-3.3-70b"
    )
    assert candidates[-1].params == {"model": "mistral-31-24b"}
    assert {c.provider for c in candidates} == {"morpheus"}


# -- gateway modes -------------------------------------------------------------------------------------


@pytest.fixture(name="lease_emulator")
def _lease_emulator(clock):
    """
    Today's gateway: no session routes, a shared pool behind chat.
    """
    return MorpheusEmulator(clock=clock.time, api_keys=[KEY], session_endpoints=False)


@pytest.mark.parametrize("serve_openapi", [True, False])
async def test_lease_mode_detected(lease_emulator, serve_openapi):
    """
    Without session routes (by OpenAPI, or by a 404 probe) a session is a lease:
    create, ping (no inference), chat by model, close, with no session route called.
    """
    lease_emulator.serve_openapi = serve_openapi
    async with serve_asgi(lease_emulator.app) as srv, make_http(srv) as http:
        provider = MorpheusProvider(
            MorpheusConfig(base_url=srv.url, api_key=KEY), client=http, name="morpheus"
        )
        remote, session = await create(provider, model="llama-3.3-70b")
        inferences = lease_emulator.inference_count
        health = await provider.ping(session)
        reply = await provider.chat(session, [{"role": "user", "content": "hi"}])
        stream = await provider.chat(
            session, [{"role": "user", "content": "x y"}], stream=True
        )
        async with stream:
            text = join_content([c async for c in stream])
        await provider.close(session)

    assert await_mode(provider) == "lease"
    assert remote.id == "lease:t-1"
    assert health.status is HealthStatus.ALIVE
    assert lease_emulator.inference_count == inferences + 2
    assert reply.content == "echo: hi"
    assert text == "echo: x y"
    chat_body = next(
        b
        for _, p, _, b in lease_emulator.requests_log
        if p.endswith("/chat/completions")
    )
    assert chat_body["model"] == "llama-3.3-70b"
    assert "session_id" not in chat_body
    assert all(
        not p.startswith("/api/v1/session/") or q == ""
        for _, p, q, _ in lease_emulator.requests_log
    )


def await_mode(provider):
    """
    The provider's detected mode (set once detection ran).
    """
    return provider._mode


async def test_lease_mode_refuses_bids(lease_emulator):
    """
    Bid sessions and approvals need session routes: a typed, permanent error.
    """
    async with serve_asgi(lease_emulator.app) as srv, make_http(srv) as http:
        provider = MorpheusProvider(
            MorpheusConfig(base_url=srv.url, api_key=KEY, mode="lease"),
            client=http,
            name="morpheus",
        )
        with pytest.raises(RequestRejectedError) as info:
            await create(provider, bid_id="0x" + "a" * 64)

    assert info.value.code == "lease_mode"


async def test_lease_ping_gone_when_model_unlisted(lease_emulator):
    """
    A lease whose model left the list pings GONE.
    """
    async with serve_asgi(lease_emulator.app) as srv, make_http(srv) as http:
        provider = MorpheusProvider(
            MorpheusConfig(base_url=srv.url, api_key=KEY, mode="lease"),
            client=http,
            name="morpheus",
        )
        _, session = await create(provider, model="mistral-31-24b")
        lease_emulator._models[model_id_for("mistral-31-24b")]["active"] = False
        health = await provider.ping(session)

    assert health.status is HealthStatus.GONE


async def test_auto_mode_falls_back_on_404(emulator, server, http):
    """
    In auto mode, a 404 on modelsession (routes gone since detection) turns the
    session into a lease instead of failing.
    """
    provider = MorpheusProvider(
        MorpheusConfig(base_url=server.url, api_key=KEY), client=http, name="morpheus"
    )
    assert await provider.mode() == "sessions"
    emulator.session_endpoints = False

    remote, _ = await create(provider, model="llama-3.3-70b")

    assert remote.data["mode"] == "lease"
    assert await provider.mode() == "lease"


async def test_sessions_mode_skips_detection(emulator, server, http):
    """
    mode="sessions" never fetches the OpenAPI document.
    """
    provider = MorpheusProvider(
        MorpheusConfig(base_url=server.url, api_key=KEY, mode="sessions"),
        client=http,
        name="morpheus",
    )

    await create(provider, model="llama-3.3-70b")

    assert not any(p.endswith("openapi.json") for _, p, _, _ in emulator.requests_log)


# -- secrets --------------------------------------------------------------------------------------------


async def test_secrets_never_leak(provider, emulator, server):
    """
    The key appears in no repr, log event, session data or error.
    """
    with structlog.testing.capture_logs() as logs:
        _, session = await create(provider, model="llama-3.3-70b")
        await provider.ping(session)
        await provider.close(session)
    wrong = "sk-AbC123.000000"
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {wrong}"}
    ) as http:
        bad = MorpheusProvider(
            MorpheusConfig(base_url=server.url, api_key=wrong),
            client=http,
            name="morpheus",
        )
        with pytest.raises(Exception) as info:
            await create(bad, model="llama-3.3-70b")

    texts = [
        repr(provider),
        repr(provider.config),
        repr(provider.api),
        repr(session),
        repr(dict(session.data)),
        repr(logs),
        str(info.value),
        repr(info.value.body),
    ]
    for text in texts:
        assert KEY not in text
        assert KEY[10:] not in text
        assert wrong not in text
    assert any(e["event"] == "tether.morpheus.session_opened" for e in logs)
