# Copyright 2026 The tether developers. MIT license.
"""
RelayProvider against the emulator over real sockets: every operation and its errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import structlog

from tether import HealthStatus, Session, SessionState
from tether.abc import CreateRequest
from tether.exceptions import (
    AuthError,
    ConflictError,
    InvalidParameterError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
    SessionClosedError,
    SessionExpiredError,
)
from tether.testing import ASGIServer, Fault, ManualClock
from tether_relay import RelayProvider, RelayUser


if TYPE_CHECKING:
    from tether_relay.emulator import RelayEmulator


Make = Callable[..., RelayProvider]
NewRequest = Callable[..., CreateRequest]
AsSession = Callable[..., Session]


async def _open(
    provider: RelayProvider, new_request: NewRequest, as_session: AsSession, *ips: str
) -> Session:
    remote = await provider.create(
        new_request(provider, users=list(ips or ["1.1.1.1"]))
    )
    return as_session(remote)


async def _until(predicate: Callable[[], bool]) -> None:
    """
    Wait (in short real sleeps) until *predicate* holds; callers bound it.
    """
    while True:
        if predicate():
            return
        await anyio.sleep(0.002)


# -- create -------------------------------------------------------------------------


async def test_create_returns_ready_session_without_tokens(
    provider: RelayProvider, new_request: NewRequest, emulator: RelayEmulator
) -> None:
    """
    create returns the ready session; its data has users and relay, no tokens.
    """
    remote = await provider.create(
        new_request(provider, users=["1.1.1.1", {"ip": "2606:4700:4700:0::1111"}])
    )
    tokens = [str(emulator.user_token(remote.id, ip)) for ip in ("1.1.1.1",)]
    view = emulator.view(remote.id)

    assert [remote.id] == emulator.live_sessions()
    assert remote.raw_state == "Linked"
    assert remote.state == SessionState.ACTIVE
    assert remote.data["users"] == ["1.1.1.1", "2606:4700:4700::1111"]
    assert remote.data["ready"] is True
    assert view["relay"]["host"] == remote.data["relay"]["host"]
    assert (
        view["relay"]["ports"]["client"]["port"] == remote.data["relay"]["client_port"]
    )
    assert not any(
        t in repr(remote) for t in [*tokens, str(view["authorization_token"])]
    )
    assert "authorization_token" not in repr(remote.data)


async def test_create_waits_for_ready_on_the_emulator_clock(
    provider: RelayProvider,
    new_request: NewRequest,
    emulator: RelayEmulator,
    clock: ManualClock,
    server: ASGIServer,
) -> None:
    """
    create polls GET until ready, which happens when the emulator's clock moves.
    """
    emulator.ready_delay = 30.0
    result: list[Any] = []

    async def run() -> None:
        result.append(await provider.create(new_request(provider, users=["1.1.1.1"])))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            await _until(lambda: sum(r.method == "GET" for r in server.requests) >= 3)
        assert result == []
        await clock.advance(30.0)

    polls = [r for r in server.requests if r.method == "GET"]

    assert result[0].data["ready"] is True
    assert all(r.path == f"/v1/relays/sessions/{result[0].id}" for r in polls)
    assert [result[0].id] == emulator.live_sessions()


async def test_create_tolerates_failed_polls(
    provider: RelayProvider,
    new_request: NewRequest,
    emulator: RelayEmulator,
    clock: ManualClock,
) -> None:
    """
    A 503 while polling readiness is not fatal: create polls again until ready.
    """
    emulator.ready_delay = 10.0
    emulator.faults.applies_to = lambda scope: scope["method"] == "GET"
    emulator.faults.kinds = {Fault.SERVER_ERROR}
    emulator.faults.rate = 1.0
    result: list[Any] = []

    async def run() -> None:
        result.append(await provider.create(new_request(provider, users=["1.1.1.1"])))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            await _until(lambda: emulator.faults.injected[Fault.SERVER_ERROR] >= 2)
        emulator.faults.rate = 0.0
        await clock.advance(10.0)

    assert result[0].data["ready"] is True


async def test_create_failure_deletes_session_and_raises(
    provider: RelayProvider, new_request: NewRequest, emulator: RelayEmulator
) -> None:
    """
    A session that reports an error is deleted, then RequestRejectedError is raised.
    """
    emulator.fail_with = "Session failed"

    with pytest.raises(RequestRejectedError, match="Session failed") as info:
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert emulator.live_sessions() == []
    assert [info.value.session_id] == emulator.deleted_sessions()
    assert info.value.operation == "create"


async def test_create_private_ip_fails_on_service_when_allowed_locally(
    make_provider: Make, new_request: NewRequest, emulator: RelayEmulator
) -> None:
    """
    With allow_private_ips the service, not tether, refuses loopback users.
    """
    provider = make_provider(allow_private_ips=True)

    with pytest.raises(RequestRejectedError, match="public address"):
        await provider.create(new_request(provider, users=["127.0.0.1"]))

    assert emulator.live_sessions() == []


async def test_create_times_out_deletes_and_raises_transient(
    make_provider: Make, new_request: NewRequest, emulator: RelayEmulator
) -> None:
    """
    Not ready by ready_timeout: the session is deleted, a retryable error raised.
    """
    emulator.ready_delay = math.inf
    provider = make_provider(ready_timeout=0.05)

    with pytest.raises(ProviderUnavailableError, match="not ready") as info:
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert info.value.retryable
    assert emulator.live_sessions() == []
    assert [info.value.session_id] == emulator.deleted_sessions()


async def test_cancelled_create_deletes_the_session(
    provider: RelayProvider,
    new_request: NewRequest,
    emulator: RelayEmulator,
    server: ASGIServer,
) -> None:
    """
    Cancelling create while it waits still deletes the half-made session.
    """
    emulator.ready_delay = math.inf

    with anyio.move_on_after(0.1) as scope:
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert scope.cancelled_caught
    assert emulator.live_sessions() == []
    assert len(emulator.deleted_sessions()) == 1
    assert server.requests[-1].method == "DELETE"


async def test_failed_cleanup_raises_outcome_unknown_with_remote_id(
    provider: RelayProvider, new_request: NewRequest, emulator: RelayEmulator
) -> None:
    """
    If the failed session cannot be deleted, the error carries its remote id.
    """
    emulator.fail_with = "Session failed"
    emulator.faults.applies_to = lambda scope: scope["method"] == "DELETE"
    emulator.faults.kinds = {Fault.SERVER_ERROR}
    emulator.faults.rate = 1.0

    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(OutcomeUnknownError) as info,
    ):
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert [info.value.session_id] == emulator.live_sessions()
    assert isinstance(info.value.__cause__, RequestRejectedError)
    assert "tether.relay.session_leaked" in {e["event"] for e in logs}


async def test_create_rejected_by_service_is_request_rejected(
    provider: RelayProvider, emulator: RelayEmulator
) -> None:
    """
    A 400 from the service maps to RequestRejectedError with its message.
    """
    request = CreateRequest(tether_id="t", params={"users": ["not-an-ip"]})

    with pytest.raises(RequestRejectedError, match="invalid IP address") as info:
        await provider.create(request)

    assert info.value.status_code == 400
    assert emulator.live_sessions() == []


# -- ping / get / list / close --------------------------------------------------------


async def test_ping_alive_degraded_gone(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    ping: ready is ALIVE, an error is DEGRADED with detail, 404 is GONE.
    """
    session = await _open(provider, new_request, as_session)
    alive = await provider.ping(session)
    emulator.fail(session.remote_id or "", "relay crashed")
    degraded = await provider.ping(session)
    emulator.kill(session.remote_id or "")
    gone = await provider.ping(session)

    assert (alive.status, alive.raw_state) == (HealthStatus.ALIVE, "Linked")
    assert alive.data["users"] == ["1.1.1.1"]
    assert degraded.status == HealthStatus.DEGRADED
    assert "relay crashed" in (degraded.detail or "")
    assert degraded.raw_state == "Error"
    assert gone.status == HealthStatus.GONE


async def test_get_returns_session_or_none(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    get returns the remote session, or None once it no longer exists.
    """
    session = await _open(provider, new_request, as_session)
    found = await provider.get(session)
    emulator.kill(session.remote_id or "")

    assert found is not None
    assert session.remote_id == found.id
    assert await provider.get(session) is None


async def test_list_follows_pages(
    provider: RelayProvider,
    new_request: NewRequest,
    emulator: RelayEmulator,
    server: ASGIServer,
) -> None:
    """
    list walks every page (?page=N) and returns each session once.
    """
    emulator.page_size = 2
    created = [
        (await provider.create(new_request(provider, users=["1.1.1.1"]))).id
        for _ in range(5)
    ]
    listed = await provider.list()
    queries = [r.query for r in server.requests if r.path == "/v1/relays/sessions"]

    assert created == [r.id for r in listed]
    assert all(r.tether_id is None for r in listed)
    assert queries == ["", "", "", "", "", "", "page=2", "page=3"]


async def test_list_is_bounded_by_max_pages(
    make_provider: Make, new_request: NewRequest, emulator: RelayEmulator
) -> None:
    """
    max_list_pages bounds how many pages list follows.
    """
    emulator.page_size = 1
    provider = make_provider(max_list_pages=2)
    for _ in range(4):
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert len(await provider.list()) == 2


async def test_close_is_idempotent(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
    server: ASGIServer,
) -> None:
    """
    close deletes (204); closing again (404) is success too.
    """
    session = await _open(provider, new_request, as_session)
    await provider.close(session)
    await provider.close(session)
    await provider.close(Session(id="x", provider="relay", state=SessionState.CREATING))

    assert emulator.live_sessions() == []
    assert sum(r.method == "DELETE" for r in server.requests) == 2


# -- update and user operations -------------------------------------------------------


async def test_update_authorizes_and_revokes(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    update(authorize=..., revoke=...) changes the users; data lists them.
    """
    session = await _open(provider, new_request, as_session, "1.1.1.1", "8.8.8.8")
    changes = provider.parse_update({"authorize": ["9.9.9.9"], "revoke": "8.8.8.8"})
    remote = await provider.update(session, changes)

    assert remote.data["users"] == ["1.1.1.1", "9.9.9.9"]
    assert emulator.user_token(remote.id, "8.8.8.8") is None
    assert emulator.user_token(remote.id, "9.9.9.9") is not None


async def test_update_is_idempotent(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    server: ASGIServer,
) -> None:
    """
    Repeating an update (as a retry would) sends no authorize or revoke again.
    """
    session = await _open(provider, new_request, as_session, "1.1.1.1", "8.8.8.8")
    changes = provider.parse_update({"authorize": ["9.9.9.9"], "revoke": ["8.8.8.8"]})
    await provider.update(session, changes)
    before = len(server.requests)
    remote = await provider.update(session, changes)
    again = [r.path for r in server.requests[before:]]

    assert remote.data["users"] == ["1.1.1.1", "9.9.9.9"]
    assert [f"/v1/relays/sessions/{remote.id}"] * 2 == again


async def test_update_of_deleted_session_is_remote_not_found(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    Updating a session the service no longer has raises RemoteNotFoundError.
    """
    session = await _open(provider, new_request, as_session)
    emulator.kill(session.remote_id or "")

    with pytest.raises(RemoteNotFoundError):
        await provider.update(
            session, provider.parse_update({"authorize": ["9.9.9.9"]})
        )


async def test_authorize_user_on_unknown_session_is_remote_not_found(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    The service refuses an unknown session with a 400 (no 404 is declared on
    ``:authorize-user``); the provider reports RemoteNotFoundError, as for
    every other operation on a session the service does not have.
    """
    session = await _open(provider, new_request, as_session)
    emulator.kill(session.remote_id or "")

    with pytest.raises(RemoteNotFoundError) as info:
        await provider.authorize_user(session, "9.9.9.9")

    assert info.value.session_id == session.remote_id
    assert isinstance(info.value.__cause__, RequestRejectedError)


async def test_authorize_user_on_a_pending_session_stays_rejected(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    A 400 for a session that exists (not ready yet) stays RequestRejectedError.
    """
    session = await _open(provider, new_request, as_session)
    emulator.ready_delay = 3600.0

    with pytest.raises(RequestRejectedError, match="not ready"):
        await provider.authorize_user(session, "9.9.9.9")


async def test_authorize_user_returns_big_token_masked(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    authorize_user returns the user's whole token (> 2**31), masked in repr.
    """
    session = await _open(provider, new_request, as_session)
    user = await provider.authorize_user(session, "9.9.9.9")
    again = await provider.authorize_user(session, "9.9.9.9")

    assert isinstance(user, RelayUser)
    assert (
        emulator.user_token(session.remote_id or "", "9.9.9.9")
        == user.authorization_token
    )
    assert user.authorization_token is not None
    assert user.authorization_token > 2**31
    assert str(user.authorization_token) not in repr(user)
    assert "***" in repr(user)
    assert user.authorization_token == again.authorization_token


async def test_credentials_hold_every_token(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    credentials() returns the session token, users' tokens and relay, masked.
    """
    session = await _open(provider, new_request, as_session, "1.1.1.1", "8.8.8.8")
    creds = await provider.credentials(session)
    view = emulator.view(session.remote_id or "")

    assert view["authorization_token"] == creds.session_token
    assert emulator.user_token(creds.session_id, "8.8.8.8") == creds.token_for(
        "8.8.8.8"
    )
    assert creds.token_for("4.4.4.4") is None
    assert creds.relay is not None
    assert view["relay"]["host"] == creds.relay.host
    assert str(creds.session_token) not in repr(creds)


async def test_revoke_user(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    revoke_user looks the user's token up, revokes, and reports whether it did.
    """
    emulator.revoke_status = 204
    session = await _open(provider, new_request, as_session, "1.1.1.1", "8.8.8.8")

    assert await provider.revoke_user(session, "8.8.8.8") is True
    assert await provider.revoke_user(session, "8.8.8.8") is False
    assert emulator.user_token(session.remote_id or "", "8.8.8.8") is None


async def test_authorize_conflict_not_explained_by_users_is_raised(
    provider: RelayProvider,
    new_request: NewRequest,
    as_session: AsSession,
    emulator: RelayEmulator,
) -> None:
    """
    A 409 for an IP the session does not list stays a ConflictError.
    """
    session = await _open(provider, new_request, as_session)

    async def conflict(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 409,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b'{"message": "Session full"}'}
        )

    # Swap the app behind the fault injector for one that always conflicts.
    emulator.faults.app, original = conflict, emulator.faults.app
    try:
        with pytest.raises(ConflictError, match="Session full"):
            await provider.authorize_user(session, "9.9.9.9")
    finally:
        emulator.faults.app = original


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (SessionState.CLOSED, SessionClosedError),
        (SessionState.EXPIRED, SessionExpiredError),
    ],
)
async def test_user_operations_refuse_ended_sessions(
    provider: RelayProvider,
    server: ASGIServer,
    state: SessionState,
    error: type[Exception],
) -> None:
    """
    credentials, authorize_user and revoke_user refuse an ended session, offline.
    """
    session = Session(id="t", provider="relay", state=state, remote_id="abc-S")

    with pytest.raises(error):
        await provider.credentials(session)
    with pytest.raises(error):
        await provider.authorize_user(session, "9.9.9.9")
    with pytest.raises(error):
        await provider.revoke_user(session, "9.9.9.9")
    assert server.requests == []


@pytest.mark.parametrize("ip", ["nope", "10.1.2.3", "127.0.0.1", "1.1.1"])
async def test_authorize_user_validates_ip_locally(
    provider: RelayProvider, server: ASGIServer, ip: str
) -> None:
    """
    A bad or non-public IP is refused before any request.
    """
    session = Session(
        id="t", provider="relay", state=SessionState.ACTIVE, remote_id="a-S"
    )

    with pytest.raises(InvalidParameterError) as info:
        await provider.authorize_user(session, ip)

    assert info.value.field == "ip"
    assert server.requests == []


# -- error mapping ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status"), [("standard-token", 403), ("unknown-token", 401)]
)
async def test_auth_errors(
    make_provider: Make,
    new_request: NewRequest,
    token: str,
    status: int,
) -> None:
    """
    401 and 403 map to AuthError, carrying the service's message, not the token.
    """
    provider = make_provider(api_token=token)

    with pytest.raises(AuthError) as info:
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert status == info.value.status_code
    assert "Unauthorized" in str(info.value) or "relay profile" in str(info.value)
    assert token not in str(info.value)
    assert token not in repr(info.value.body)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.SERVER_ERROR, ProviderUnavailableError),
        (Fault.RATE_LIMIT, RateLimitedError),
        (Fault.DROP, OutcomeUnknownError),
        (Fault.DROP_AFTER, OutcomeUnknownError),
        (Fault.MALFORMED, ProviderUnavailableError),
    ],
)
async def test_transport_faults_are_classified(
    provider: RelayProvider,
    new_request: NewRequest,
    emulator: RelayEmulator,
    fault: Fault,
    error: type[Exception],
) -> None:
    """
    Injected faults on create become tether's transient errors.
    """
    emulator.faults.kinds = {fault}
    emulator.faults.rate = 1.0

    with pytest.raises(error) as info:
        await provider.create(new_request(provider, users=["1.1.1.1"]))

    assert getattr(info.value, "retryable", False)


async def test_ping_of_session_without_remote_id(provider: RelayProvider) -> None:
    """
    A session that never got a remote id cannot be pinged: RemoteNotFoundError.
    """
    session = Session(id="t", provider="relay", state=SessionState.CREATING)

    with pytest.raises(RemoteNotFoundError):
        await provider.ping(session)


async def test_not_supported_operations(
    provider: RelayProvider, new_request: NewRequest, as_session: AsSession
) -> None:
    """
    find and renew are honestly unsupported.
    """
    from tether.exceptions import NotSupportedError  # noqa: PLC0415

    session = await _open(provider, new_request, as_session)

    with pytest.raises(NotSupportedError):
        await provider.find("tether-1")
    with pytest.raises(NotSupportedError):
        await provider.renew(session, 60)
