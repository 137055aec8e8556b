"""
The emulator as today's session-less gateway (``session_endpoints=False``),
read through raw HTTP: the routes it has and lacks, billing, headers, 422s, the
401 challenge, the OpenAPI document, and the per-model chat faults.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from tether.testing import serve_asgi
from tether_morpheus.emulator import MorpheusEmulator

from .conftest import KEY


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


WRONG = KEY[:-4] + "0000"
HI = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(name="today")
def _today(clock) -> MorpheusEmulator:
    """
    Today's gateway: no session routes, billing, a shared pool behind chat.
    """
    return MorpheusEmulator(clock=clock.time, api_keys=[KEY], session_endpoints=False)


@pytest.fixture(name="raw")
async def _raw(today) -> AsyncIterator[httpx.AsyncClient]:
    """
    A plain HTTP client on today's gateway, carrying the right key.
    """
    async with (
        serve_asgi(today.app) as server,
        httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}
        ) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/api/v1/auth/private-key"),
        ("GET", "/api/v1/auth/delegation"),
        ("GET", "/api/v1/auth/delegation/active"),
        ("GET", "/api/v1/automation/settings"),
        ("POST", "/api/v1/session/pingsession"),
    ],
)
async def test_seed_era_routes_are_gone(raw, method, path):
    """
    Today's gateway has no seed-era auth routes, no automation, no sessions.
    """
    response = await raw.request(method, path, json={})

    assert 404 == response.status_code


async def test_balance_checks_the_key(raw):
    """
    ``GET /billing/balance`` takes an API key: 200 with the balance for the
    right one, 401 (with a Bearer challenge) for a wrong secret.
    """
    ok = await raw.get("/api/v1/billing/balance")
    bad = await raw.get(
        "/api/v1/billing/balance", headers={"Authorization": f"Bearer {WRONG}"}
    )

    assert 200 == ok.status_code
    assert "100" == ok.json()["total_available"]
    assert {"paid", "staking", "total_available", "currency"} == set(ok.json())
    assert 401 == bad.status_code
    assert "Bearer" == bad.headers["www-authenticate"]


@pytest.mark.parametrize("stream", [False, True])
async def test_empty_balance_is_402_json(today, raw, stream):
    """
    With no credits, chat answers 402 ``insufficient_balance`` as plain JSON,
    even for ``stream: true``.
    """
    today.set_balance(0)

    response = await raw.post("/api/v1/chat/completions", json={**HI, "stream": stream})

    assert 402 == response.status_code
    assert response.headers["content-type"].startswith("application/json")
    assert "insufficient_balance" == response.json()["error"]["type"]


async def test_chat_headers(raw):
    """
    Chat answers carry ``x-request-id`` and ``x-ratelimit-*``; streams also
    ``cache-control: no-cache``.
    """
    plain = await raw.post("/api/v1/chat/completions", json=HI)
    stream = await raw.post("/api/v1/chat/completions", json={**HI, "stream": True})

    for response in (plain, stream):
        assert response.headers["x-request-id"]
        assert response.headers["x-ratelimit-limit-requests"]
        assert response.headers["x-ratelimit-remaining-requests"]
    assert "no-cache" == stream.headers["cache-control"]


async def test_bad_n_is_422(raw):
    """
    ``n`` is an integer field: ``"abc"`` is refused with pydantic's 422.
    """
    response = await raw.post("/api/v1/chat/completions", json={**HI, "n": "abc"})

    assert 422 == response.status_code
    assert ["body", "n"] == response.json()["detail"][0]["loc"]


async def test_chat_401_challenges(raw):
    """
    A chat with a wrong secret answers 401 with ``WWW-Authenticate: Bearer``.
    """
    response = await raw.post(
        "/api/v1/chat/completions",
        json=HI,
        headers={"Authorization": f"Bearer {WRONG}"},
    )

    assert 401 == response.status_code
    assert "Bearer" == response.headers["www-authenticate"]


async def test_openapi_of_today(raw):
    """
    The document says 3.0.2 / 0.0.0-dev, lists billing and no legacy routes.
    """
    document = (await raw.get("/api/v1/openapi.json")).json()

    assert ("3.0.2", "0.0.0-dev") == (document["openapi"], document["info"]["version"])
    assert "/api/v1/billing/balance" in document["paths"]
    assert not any(
        p.startswith(("/api/v1/session/", "/api/v1/automation/", "/api/v1/auth/login"))
        for p in document["paths"]
    )


async def test_provider_closed_connection_fails_one_model(today, raw):
    """
    A failing provider behind one model gives 502 ``proxy_error`` there (JSON,
    streams too); other models answer.
    """
    today.fail_model("llama-3.3-70b", "provider_closed_connection")

    failed = await raw.post("/api/v1/chat/completions", json=HI)
    streamed = await raw.post("/api/v1/chat/completions", json={**HI, "stream": True})
    other = await raw.post(
        "/api/v1/chat/completions", json={**HI, "model": "mistral-31-24b"}
    )

    assert 502 == failed.status_code
    assert "proxy_error" == failed.json()["error"]["type"]
    assert 502 == streamed.status_code
    assert 200 == other.status_code


async def test_in_band_proxy_error(today, raw):
    """
    The ``proxy_error`` fault arrives in-band on streams: HTTP 200, one error
    event, no ``[DONE]``.
    """
    today.fail_model("llama-3.3-70b", "proxy_error")

    response = await raw.post("/api/v1/chat/completions", json={**HI, "stream": True})

    assert 200 == response.status_code
    event = json.loads(response.text.removeprefix("data: ").strip())
    assert "proxy_error" == event["error"]["type"]
    assert "[DONE]" not in response.text


async def test_session_not_found_lasts_until_cleanup(today, raw, clock):
    """
    A lost pool session answers 500 ``session not found`` on every chat until
    the gateway's cleanup (``until``) clears it.
    """
    today.fail_model("llama-3.3-70b", "session_not_found", until=clock.time() + 60)

    first = await raw.post("/api/v1/chat/completions", json=HI)
    second = await raw.post("/api/v1/chat/completions", json=HI)
    await clock.advance(61)
    after = await raw.post("/api/v1/chat/completions", json=HI)

    assert [500, 500] == [first.status_code, second.status_code]
    assert "session not found" in first.json()["error"]["message"]
    assert 200 == after.status_code


async def test_session_expired_is_renewed_once(today, raw):
    """
    ``session expired`` is renewed by the gateway and retried: the client sees 200.
    """
    today.fail_model("llama-3.3-70b", "session_expired")

    response = await raw.post("/api/v1/chat/completions", json=HI)

    assert 200 == response.status_code
    assert 1 == today.pool_renewals
