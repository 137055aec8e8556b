"""
Session-bound requests: X-Session-Id is sent only for a session known to be
live, because Sipher silently ignores a dead one and drops its defaults.
"""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest

from tether import Session, SessionState
from tether.abc import CreateRequest
from tether.exceptions import (
    InvalidParameterError,
    ProviderUnavailableError,
    SessionClosedError,
    SessionExpiredError,
    SessionLostError,
)
from tether.testing import ASGIServer, Fault, ManualClock
from tether_sipher import SipherProvider
from tether_sipher.emulator import SipherEmulator


COMPARE = {"operation": "stealth_privacy"}


async def _create(
    provider: SipherProvider, lifetime: float = 3600, **params: Any
) -> Session:
    parsed = provider.parse_create(
        params or {"chain": "ethereum", "privacy_level": "shielded"}
    )
    remote = await provider.create(
        CreateRequest(tether_id="tether-1", params=parsed, lifetime=lifetime)
    )
    return Session(
        id="tether-1",
        provider="sipher",
        state=SessionState.ACTIVE,
        remote_id=remote.id,
        expires_at=remote.expires_at,
        data=remote.data,
    )


def _compare_requests(server: ASGIServer) -> list[dict[str, str]]:
    return [r.headers for r in server.requests if r.path == "/v1/backends/compare"]


async def test_bound_client_applies_session_defaults(
    provider: SipherProvider, server: ASGIServer, emulator: SipherEmulator
) -> None:
    """
    Requests through bound_client carry the key and X-Session-Id, so the
    service fills in the session's defaults.
    """
    session = await _create(provider)

    async with provider.bound_client(session) as client:
        response = await client.post("/v1/backends/compare", json=COMPARE)

    assert response.status_code == 200
    assert response.json()["data"]["chain"] == "ethereum"
    assert emulator.effective_bodies[-1]["privacyLevel"] == "shielded"
    assert _compare_requests(server)[-1]["x-session-id"] == session.remote_id


async def test_fresh_session_needs_no_extra_get(
    provider: SipherProvider, server: ASGIServer
) -> None:
    """
    With verify="stale", a session confirmed moments ago is not re-checked.
    """
    session = await _create(provider)
    before = server.request_count

    async with provider.bound_client(session) as client:
        await client.post("/v1/backends/compare", json=COMPARE)

    assert server.request_count - before == 1


async def test_stale_session_is_confirmed_with_a_get(
    provider: SipherProvider, server: ASGIServer, clock: ManualClock
) -> None:
    """
    Once the last confirmation is older than verify_after, a GET comes first.
    """
    session = await _create(provider)
    await clock.advance(61)
    before = len(server.requests)

    async with provider.bound_client(session) as client:
        await client.post("/v1/backends/compare", json=COMPARE)

    paths = [(r.method, r.path) for r in server.requests[before:]]
    assert paths == [
        ("GET", f"/v1/sessions/{session.remote_id}"),
        ("POST", "/v1/backends/compare"),
    ]


async def test_expired_session_refused_without_sending(
    provider: SipherProvider, server: ASGIServer, clock: ManualClock
) -> None:
    """
    Past expiresAt (less the margin) the bound client raises
    SessionExpiredError and sends nothing at all.
    """
    session = await _create(provider, lifetime=60)
    await clock.advance(56)
    before = server.request_count

    async with provider.bound_client(session) as client:
        with pytest.raises(SessionExpiredError):
            await client.post("/v1/backends/compare", json=COMPARE)

    assert server.request_count == before


async def test_lost_session_refused_after_get(
    provider: SipherProvider, server: ASGIServer, emulator: SipherEmulator
) -> None:
    """
    A session the service lost (restart without Redis) is found by the GET and
    refused with SessionLostError; the real request is never sent.
    """
    session = await _create(provider)
    emulator.restart()

    async with provider.bound_client(session, verify="always") as client:
        with pytest.raises(SessionLostError):
            await client.post("/v1/backends/compare", json=COMPARE)
        # Once known to be lost, later requests fail without asking again.
        before = server.request_count
        with pytest.raises(SessionLostError):
            await client.post("/v1/backends/compare", json=COMPARE)

    assert _compare_requests(server) == []
    assert server.request_count == before


async def test_verify_never_shows_the_silent_fallback(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    With verify="never" a lost session goes unnoticed and the service runs the
    request without the defaults: the hazard the checks exist for.
    """
    session = await _create(provider)
    emulator.restart()

    async with provider.bound_client(session, verify="never") as client:
        response = await client.post("/v1/backends/compare", json=COMPARE)

    assert response.status_code == 200
    assert response.json()["data"]["chain"] == "solana"


async def test_closed_session_refused(
    provider: SipherProvider, server: ASGIServer
) -> None:
    """
    After close, a stale copy of the session value is still refused.
    """
    session = await _create(provider)
    await provider.close(session)

    async with provider.bound_client(session) as client:
        with pytest.raises(SessionClosedError):
            await client.post("/v1/backends/compare", json=COMPARE)

    assert _compare_requests(server) == []


@pytest.mark.parametrize("verify", ["stale", "always", "never"])
async def test_closed_session_stays_closed_after_a_get_sees_404(
    provider: SipherProvider, server: ASGIServer, clock: ManualClock, verify: str
) -> None:
    """
    A get (or ping) after tether closed the session sees SESSION_NOT_FOUND;
    the bound client still refuses with SessionClosedError, not Lost.
    """
    session = await _create(provider)
    await provider.close(session)
    assert await provider.get(session) is None
    await provider.ping(session)
    await clock.advance(3601)
    await provider.ping(session)

    async with provider.bound_client(session, verify=verify) as client:
        with pytest.raises(SessionClosedError):
            await client.post("/v1/backends/compare", json=COMPARE)

    assert _compare_requests(server) == []


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (SessionState.CLOSED, SessionClosedError),
        (SessionState.EXPIRED, SessionExpiredError),
        (SessionState.LOST, SessionLostError),
    ],
)
async def test_terminal_session_values_refused(
    provider: SipherProvider, state: SessionState, error: type[Exception]
) -> None:
    """
    A session value in a terminal state cannot even open a bound client.
    """
    session = attrs.evolve(await _create(provider), state=state)

    with pytest.raises(error):
        async with provider.bound_client(session):
            pass


async def test_check_failure_sends_nothing(
    provider: SipherProvider,
    server: ASGIServer,
    emulator: SipherEmulator,
    clock: ManualClock,
) -> None:
    """
    When the liveness GET itself fails, its typed error propagates and the
    request is not sent.
    """
    session = await _create(provider)
    await clock.advance(120)
    emulator.inject_error(503, "SERVICE_UNAVAILABLE", "down")

    async with provider.bound_client(session) as client:
        with pytest.raises(ProviderUnavailableError):
            await client.post("/v1/backends/compare", json=COMPARE)

    assert _compare_requests(server) == []


async def test_session_request(provider: SipherProvider, server: ASGIServer) -> None:
    """
    session_request sends one request through the provider's own client.
    """
    session = await _create(provider, chain="bitcoin")

    response = await provider.session_request(
        session, "POST", "/v1/backends/compare", json=COMPARE
    )

    assert response.json()["data"]["chain"] == "bitcoin"
    assert _compare_requests(server)[-1]["x-session-id"] == session.remote_id


async def test_session_auth_on_users_client(
    provider: SipherProvider, server: ASGIServer
) -> None:
    """
    session_auth() binds a client the user built, adding key and session id.
    """
    session = await _create(provider, chain="sui")

    async with httpx.AsyncClient(
        base_url=server.url, auth=provider.session_auth(session)
    ) as client:
        response = await client.post("/v1/backends/compare", json=COMPARE)

    assert response.json()["data"]["chain"] == "sui"
    assert "x-api-key" in _compare_requests(server)[-1]


async def test_session_auth_refuses_sync_clients(provider: SipherProvider) -> None:
    """
    The auth flow needs an async client.
    """
    session = await _create(provider)

    with (
        httpx.Client(
            base_url="http://127.0.0.1:9", auth=provider.session_auth(session)
        ) as c,
        pytest.raises(RuntimeError),
    ):
        c.get("/")  # noqa: ASYNC212 -- the point: a sync client is refused


async def test_bad_verify_policy(provider: SipherProvider) -> None:
    """
    An unknown verify policy is an InvalidParameterError.
    """
    session = await _create(provider)

    with pytest.raises(InvalidParameterError):
        await provider.ensure_live(session, verify="sometimes")


async def test_bound_client_through_faults(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    Injected faults on the bound route surface as httpx results, not as
    silently-defaultless successes.
    """
    session = await _create(provider)
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.RATE_LIMIT]

    async with provider.bound_client(session) as client:
        response = await client.post("/v1/backends/compare", json=COMPARE)

    assert response.status_code == 429
