"""
SipherProvider against the emulator over real sockets: every operation and its
error cases, local validation, and the mapping of Sipher's error envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import httpx
import pytest

from tether import HealthStatus, Session, SessionState
from tether.abc import CreateRequest, RemoteSession
from tether.exceptions import (
    AuthError,
    ConfigError,
    InvalidParameterError,
    NotSupportedError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
)
from tether.testing import ASGIServer, Fault, ManualClock
from tether_sipher import SipherConfig, SipherProvider
from tether_sipher.emulator import ENTERPRISE_KEY, FREE_KEY, SipherEmulator


VK = "0x" + "ab" * 32


def _session(remote: RemoteSession, **changes: Any) -> Session:
    fields: dict[str, Any] = {
        "id": "tether-1",
        "provider": "sipher",
        "state": SessionState.ACTIVE,
        "remote_id": remote.id,
        "expires_at": remote.expires_at,
        "data": remote.data,
    }
    fields.update(changes)
    return Session(**fields)


async def _create(
    provider: SipherProvider, lifetime: float | None = None, **params: Any
) -> Session:
    parsed = provider.parse_create(params)
    life = provider.lifetime_for(lifetime, parsed)
    remote = await provider.create(
        CreateRequest(tether_id="tether-1", params=parsed, lifetime=life)
    )
    return _session(remote)


async def test_create_sends_defaults_and_ttl(
    provider: SipherProvider, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    create posts {defaults, ttlSeconds} and reads the ms timestamps into
    expires_at; snake_case and camelCase names both work.
    """
    session = await _create(
        provider,
        lifetime=600,
        chain="solana",
        privacy_level="shielded",
        rpcProvider="helius",
    )

    assert session.remote_id in emulator.live_sessions()
    assert emulator.session_defaults(session.remote_id or "") == {
        "chain": "solana",
        "privacyLevel": "shielded",
        "rpcProvider": "helius",
    }
    assert session.expires_at == datetime.fromtimestamp(clock.time() + 600, UTC)
    assert session.data["defaults"] == {
        "chain": "solana",
        "privacyLevel": "shielded",
        "rpcProvider": "helius",
    }
    assert session.data["createdAt"] == int(clock.time() * 1000)


async def test_default_lifetime_is_3600(
    provider: SipherProvider, clock: ManualClock
) -> None:
    """
    Without lifetime= the service's default of 3600 s is asked for.
    """
    session = await _create(provider)

    assert session.expires_at is not None
    assert session.expires_at.timestamp() - clock.time() == 3600


async def test_defaults_mapping_form(provider: SipherProvider) -> None:
    """
    Parameters can also come as one defaults= mapping of JSON names.
    """
    parsed = provider.parse_create(
        {"defaults": {"chain": "zcash", "backend": "sip-native"}}
    )

    assert parsed == {"chain": "zcash", "backend": "sip-native"}


@pytest.mark.parametrize(
    ("params", "field", "allowed_part"),
    [
        ({"chain": "dogecoin"}, "chain", "solana"),
        ({"privacy_level": "secret"}, "privacy_level", "standard, shielded, maximum"),
        (
            {"rpcProvider": "infura"},
            "rpcProvider",
            "helius, quicknode, triton, generic",
        ),
        ({"backend": "mock"}, "backend", "sip-native"),
        ({"default_viewing_key": "nothex"}, "default_viewing_key", "0x"),
        ({"colour": "red"}, "colour", "chain"),
        ({"ttlSeconds": 600}, "ttlSeconds", "lifetime="),
        ({"chain": "base", "defaults": {"chain": "sui"}}, "chain", "one value"),
        ({"defaults": "solana"}, "defaults", "mapping"),
    ],
)
async def test_invalid_parameters_rejected_locally(
    provider: SipherProvider,
    server: ASGIServer,
    params: dict[str, Any],
    field: str,
    allowed_part: str,
) -> None:
    """
    Bad parameters raise InvalidParameterError naming the field and the allowed
    values, and nothing is sent.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.parse_create(params)

    assert info.value.field == field
    assert allowed_part in (info.value.allowed or "")
    assert server.requests == []


@pytest.mark.parametrize("lifetime", [59, 86_401, 90.5])
async def test_lifetime_bounds(provider: SipherProvider, lifetime: float) -> None:
    """
    lifetime= must be whole seconds from 60 to 86400.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.lifetime_for(lifetime, {})

    assert info.value.field == "lifetime"


async def test_get_and_ping_alive(provider: SipherProvider, clock: ManualClock) -> None:
    """
    get returns the session; ping is ALIVE with the service's expiresAt.
    """
    session = await _create(provider, chain="near")
    await clock.advance(5)

    remote = await provider.get(session)
    health = await provider.ping(session)

    assert remote is not None
    assert remote.data["defaults"] == {"chain": "near"}
    assert remote.data["lastAccessedAt"] == int(clock.time() * 1000)
    assert health.status is HealthStatus.ALIVE
    assert health.expires_at == session.expires_at


async def test_ping_after_expiry_is_expired_without_request(
    provider: SipherProvider, server: ASGIServer, clock: ManualClock
) -> None:
    """
    Past expiresAt ping says EXPIRED locally: no request spends quota.
    """
    session = await _create(provider, lifetime=60)
    sent = server.request_count
    await clock.advance(61)

    health = await provider.ping(session)

    assert health.status is HealthStatus.EXPIRED
    assert server.request_count == sent


async def test_ping_gone_before_expiry(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    SESSION_NOT_FOUND before the deadline (a restart without Redis) is GONE.
    """
    session = await _create(provider)
    emulator.restart()

    health = await provider.ping(session)
    remote = await provider.get(session)

    assert health.status is HealthStatus.GONE
    assert health.raw_state == "SESSION_NOT_FOUND"
    assert remote is None


async def test_ping_404_is_expired_only_with_a_known_deadline(
    provider: SipherProvider, clock: ManualClock
) -> None:
    """
    SESSION_NOT_FOUND says nothing about why; past a known deadline ping says
    EXPIRED, and without one it can only say GONE.
    """
    session = await _create(provider, lifetime=60)
    bare = attrs.evolve(session, expires_at=None, data={})
    provider._liveness.clear()
    await clock.advance(60)

    without_deadline = await provider.ping(bare)
    with_deadline = await provider.ping(session)

    assert without_deadline.status is HealthStatus.GONE
    assert with_deadline.status is HealthStatus.EXPIRED


async def test_update_merges_and_keeps_expiry(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    update PATCHes a shallow merge; expiresAt stays; createdAt is kept from before.
    """
    session = await _create(provider, chain="solana", privacy_level="standard")

    remote = await provider.update(
        session, provider.parse_update({"privacy_level": "maximum"})
    )

    assert remote.data["defaults"] == {"chain": "solana", "privacyLevel": "maximum"}
    assert remote.expires_at == session.expires_at
    assert remote.data["createdAt"] == session.data["createdAt"]
    assert emulator.session_defaults(session.remote_id or "") == {
        "chain": "solana",
        "privacyLevel": "maximum",
    }


@pytest.mark.parametrize("name", ["ttlSeconds", "ttl_seconds", "lifetime"])
async def test_update_cannot_change_ttl(provider: SipherProvider, name: str) -> None:
    """
    A TTL in an update is refused locally: the service would ignore it.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.parse_update({name: 7200})

    assert "cannot change" in str(info.value)


async def test_update_missing_session_is_remote_not_found(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    PATCH on a session the service lost raises RemoteNotFoundError with the code.
    """
    session = await _create(provider)
    emulator.kill(session.remote_id or "")

    with pytest.raises(RemoteNotFoundError) as info:
        await provider.update(session, {"chain": "base"})

    assert info.value.code == "SESSION_NOT_FOUND"
    assert info.value.status_code == 404


async def test_close_is_idempotent(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    close DELETEs; closing again (404 SESSION_NOT_FOUND) is success.
    """
    session = await _create(provider)

    await provider.close(session)
    await provider.close(session)

    assert emulator.live_sessions() == set()


async def test_renew_list_find_not_supported(provider: SipherProvider) -> None:
    """
    Capabilities are honest: no renew, list or find.
    """
    session = await _create(provider)
    caps = provider.capabilities

    with pytest.raises(NotSupportedError):
        await provider.renew(session, 60)
    with pytest.raises(NotSupportedError):
        await provider.list()
    with pytest.raises(NotSupportedError):
        await provider.find("tether-1")

    assert (caps.update, caps.get, caps.renew, caps.list, caps.find) == (
        True,
        True,
        False,
        False,
        False,
    )
    assert (caps.min_lifetime, caps.max_lifetime, caps.default_lifetime) == (
        60,
        86400,
        3600,
    )


async def test_free_key_is_auth_error_with_code(
    make_provider: Any, server: ASGIServer
) -> None:
    """
    A free key gets 403 TIER_ACCESS_DENIED -> AuthError carrying the code.
    """
    provider = await make_provider(api_key=FREE_KEY)

    with pytest.raises(AuthError) as info:
        await provider.create(CreateRequest(tether_id="t", params={}))

    assert info.value.code == "TIER_ACCESS_DENIED"
    assert info.value.status_code == 403
    assert "free tier" in str(info.value)
    assert FREE_KEY not in str(info.value)


async def test_unknown_key_is_auth_error(make_provider: Any) -> None:
    """
    An unknown key gets 401 INVALID_API_KEY -> AuthError.
    """
    provider = await make_provider(api_key="sk_pro_not_a_key")

    with pytest.raises(AuthError) as info:
        await provider.create(CreateRequest(tether_id="t", params={}))

    assert info.value.code == "INVALID_API_KEY"


async def test_bearer_scheme(make_provider: Any, emulator: SipherEmulator) -> None:
    """
    auth_scheme="bearer" authenticates with Authorization: Bearer.
    """
    provider = await make_provider(auth_scheme="bearer")

    remote = await provider.create(CreateRequest(tether_id="t", params={}))

    assert remote.id in emulator.live_sessions()
    assert "X-API-Key" not in SipherProvider.client_options(provider.config).headers


async def test_another_keys_session_is_not_found(
    provider: SipherProvider, make_provider: Any
) -> None:
    """
    Another key cannot see the session: get returns None.
    """
    session = await _create(provider)
    other = await make_provider(api_key=ENTERPRISE_KEY)

    assert await other.get(session) is None


async def test_rate_limited_with_retry_after(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    429 RATE_LIMIT_EXCEEDED -> RateLimitedError with retry_after from Retry-After.
    """
    emulator.rate_limit = 1
    await _create(provider)

    with pytest.raises(RateLimitedError) as info:
        await _create(provider)

    assert info.value.code == "RATE_LIMIT_EXCEEDED"
    assert info.value.retry_after == 60


async def test_daily_quota_retry_after_from_reset_at(
    provider: SipherProvider, emulator: SipherEmulator, clock: ManualClock
) -> None:
    """
    429 DAILY_QUOTA_EXCEEDED (no Retry-After) -> retry_after until resetAt.
    """
    emulator.daily_quotas = {"pro": (100, 0)}
    midnight = (clock.time() // 86400 + 1) * 86400

    with pytest.raises(RateLimitedError) as info:
        await _create(provider)

    assert info.value.code == "DAILY_QUOTA_EXCEEDED"
    assert info.value.retry_after == pytest.approx(midnight - clock.time())


async def test_server_validation_is_request_rejected(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    A 400 VALIDATION_ERROR from the service -> RequestRejectedError with the issues.
    """
    emulator.inject_error(400, "VALIDATION_ERROR", "Request validation failed")

    with pytest.raises(RequestRejectedError) as info:
        await _create(provider)

    assert info.value.code == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "SESSION_CREATE_FAILED"),
        (503, "SERVICE_UNAVAILABLE"),
        (408, "REQUEST_TIMEOUT"),
    ],
)
async def test_server_failures_are_transient(
    provider: SipherProvider, emulator: SipherEmulator, status: int, code: str
) -> None:
    """
    408 and 5xx -> ProviderUnavailableError (retryable), with the service's code.
    """
    emulator.inject_error(status, code, "boom")

    with pytest.raises(ProviderUnavailableError) as info:
        await _create(provider)

    assert info.value.code == code
    assert info.value.retryable


async def test_fault_injector_envelopes_still_map(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    Non-Sipher bodies (a proxy's 503, the injector's) map by status alone.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.SERVER_ERROR]

    with pytest.raises(ProviderUnavailableError) as info:
        await _create(provider)

    assert info.value.status_code == 503
    assert info.value.code is None


async def test_garbled_create_answer_is_outcome_unknown(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    A 2xx create whose body is not JSON may still have made a session:
    OutcomeUnknownError, never a plain retryable error.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.MALFORMED]

    with pytest.raises(OutcomeUnknownError):
        await _create(provider)


async def test_dropped_connection_after_create_is_outcome_unknown(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    A create that reached the service but got no answer is OutcomeUnknownError,
    and the orphan exists (it will expire by itself).
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.DROP_AFTER]

    with pytest.raises(OutcomeUnknownError):
        await _create(provider)

    assert len(emulator.live_sessions()) == 1


async def test_unreachable_service(make_provider: Any) -> None:
    """
    A closed port is ProviderUnavailableError.
    """
    provider = await make_provider(base_url="http://127.0.0.1:9")

    with pytest.raises(ProviderUnavailableError):
        await provider.create(CreateRequest(tether_id="t", params={}))


def test_config_validation() -> None:
    """
    Config errors are ConfigError and never show the key.
    """
    with pytest.raises(ConfigError):
        SipherConfig(api_key="")
    with pytest.raises(ConfigError) as info:
        SipherConfig(api_key="sk_pro_abc def")
    assert "abc" not in str(info.value)
    with pytest.raises(ConfigError):
        SipherConfig(api_key="k", auth_scheme="basic")
    with pytest.raises(ConfigError):
        SipherConfig(api_key="k", verify="sometimes")
    with pytest.raises(ConfigError):
        SipherConfig(api_key="k", default_viewing_key="zz")

    assert SipherConfig(api_key="k").base_url == "https://sipher.sip-protocol.org"


async def test_credential_id_depends_on_api_key_only() -> None:
    """
    Sessions belong to the API key: the viewing key does not change the
    credential fingerprint, and the fingerprint does not contain the key.
    """
    async with httpx.AsyncClient() as client:
        a = SipherProvider(SipherConfig(api_key="sk_pro_1"), client=client)
        b = SipherProvider(
            SipherConfig(api_key="sk_pro_1", default_viewing_key=VK), client=client
        )
        c = SipherProvider(SipherConfig(api_key="sk_pro_2"), client=client)

    assert a.credential_id() == b.credential_id() != c.credential_id()
    assert "sk_pro_1" not in (a.credential_id() or "")


# -- the daily session quota ------------------------------------------------------


async def test_spent_quota_refuses_delete_and_pings_stop_spending(
    make_provider: Any, server: ASGIServer, emulator: SipherEmulator
) -> None:
    """
    A spent daily quota refuses DELETE too (429 DAILY_QUOTA_EXCEEDED, hours to
    wait); after that, pings stop asking the service until the reset.
    """
    provider = await make_provider()
    session = await _create(provider)
    emulator.daily_quotas = {"pro": (100, 2)}
    await provider.ping(session)  # the second successful session request

    with pytest.raises(RateLimitedError) as info:
        await provider.close(session)
    before = server.request_count
    health = await provider.ping(session)

    assert info.value.code == "DAILY_QUOTA_EXCEEDED"
    assert (info.value.retry_after or 0) > 3600
    assert server.request_count == before
    assert health.status is HealthStatus.ALIVE
    assert health.raw_state == "unverified"


async def test_pings_keep_the_quota_a_close_needs(
    make_provider: Any, server: ASGIServer, emulator: SipherEmulator
) -> None:
    """
    With session_quota set, pings stop while what is left would not cover
    closing the open sessions, and the close still goes through.
    """
    emulator.daily_quotas = {"pro": (100, 5)}
    provider = await make_provider(session_quota=5)
    session = await _create(provider)  # 1 used
    pinged = 0
    for _ in range(10):
        before = server.request_count
        await provider.ping(session)
        pinged += server.request_count - before

    await provider.close(session)

    assert pinged == 3
    assert emulator.live_sessions() == set()
