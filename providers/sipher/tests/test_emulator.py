"""
The emulator behaves like Sipher on the wire: routes, envelopes, auth, limits.
"""

from __future__ import annotations

import httpx
import pytest

from tether.testing import ASGIServer, ManualClock, serve_asgi
from tether_sipher.emulator import (
    ENTERPRISE_KEY,
    FREE_KEY,
    PRO_KEY,
    SipherEmulator,
)


GHOST = "sess_" + "0" * 64


async def _create(http: httpx.AsyncClient, **body: object) -> dict[str, object]:
    body.setdefault("defaults", {})
    response = await http.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()["data"]
    return data


async def test_create_returns_201_with_epoch_ms_and_default_ttl(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """
    POST /v1/sessions answers 201 with sessionId, defaults and ms timestamps;
    the default TTL is 3600 s.
    """
    response = await http.post("/v1/sessions", json={"defaults": {"chain": "solana"}})

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"sessionId", "defaults", "createdAt", "expiresAt"}
    assert data["sessionId"].startswith("sess_")
    assert len(data["sessionId"]) == 5 + 64
    assert data["defaults"] == {"chain": "solana"}
    assert data["createdAt"] == int(clock.time() * 1000)
    assert data["expiresAt"] - data["createdAt"] == 3_600_000


async def test_create_strips_unknown_keys(http: httpx.AsyncClient) -> None:
    """
    Unknown keys inside defaults (and at the top level) are silently dropped.
    """
    data = await _create(http, defaults={"chain": "base", "colour": "red"}, extra=1)

    assert data["defaults"] == {"chain": "base"}


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({"defaults": {}, "ttlSeconds": 30}, "too_small", ["ttlSeconds"]),
        ({"defaults": {}, "ttlSeconds": 86_401}, "too_big", ["ttlSeconds"]),
        ({"defaults": {}, "ttlSeconds": 90.5}, "invalid_type", ["ttlSeconds"]),
        ({"defaults": {}, "ttlSeconds": "60"}, "invalid_type", ["ttlSeconds"]),
        ({}, "invalid_type", ["defaults"]),
        ({"defaults": {"chain": "dogecoin"}}, "invalid_value", ["defaults", "chain"]),
        (
            {"defaults": {"privacyLevel": "secret"}},
            "invalid_value",
            ["defaults", "privacyLevel"],
        ),
        (
            {"defaults": {"backend": "mock"}},
            "invalid_value",
            ["defaults", "backend"],
        ),
        (
            {"defaults": {"defaultViewingKey": "abc"}},
            "invalid_format",
            ["defaults", "defaultViewingKey"],
        ),
    ],
)
async def test_create_validation_errors(
    http: httpx.AsyncClient, body: dict[str, object], code: str, path: list[str]
) -> None:
    """
    Invalid bodies get 400 VALIDATION_ERROR whose details are zod issues.
    """
    response = await http.post("/v1/sessions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert response.json()["success"] is False
    assert [(i["code"], i["path"]) for i in error["details"]] == [(code, path)]


async def test_create_invalid_json(http: httpx.AsyncClient) -> None:
    """
    A body that is not JSON gets 400 INVALID_JSON.
    """
    response = await http.post(
        "/v1/sessions", content=b"{nope", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_JSON"


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": PRO_KEY}, {"Authorization": f"Bearer {PRO_KEY}"}],
    ids=["x-api-key", "bearer"],
)
async def test_both_auth_schemes(server: ASGIServer, headers: dict[str, str]) -> None:
    """
    X-API-Key and Authorization: Bearer are both accepted.
    """
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        response = await client.post("/v1/sessions", json={"defaults": {}})

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHORIZED"),
        ({"X-API-Key": "sk_pro_wrong"}, 401, "INVALID_API_KEY"),
        ({"X-API-Key": FREE_KEY}, 403, "TIER_ACCESS_DENIED"),
    ],
    ids=["missing", "unknown", "free-tier"],
)
async def test_auth_failures(
    server: ASGIServer, headers: dict[str, str], status: int, code: str
) -> None:
    """
    No key is 401 UNAUTHORIZED, an unknown key 401 INVALID_API_KEY, a free key
    403 TIER_ACCESS_DENIED with the service's message.
    """
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        response = await client.post("/v1/sessions", json={"defaults": {}})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if code == "TIER_ACCESS_DENIED":
        assert response.json()["error"]["message"] == (
            "Endpoint /v1/sessions not available on free tier. "
            "Upgrade to pro or enterprise."
        )


async def test_get_patch_delete_round_trip(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """
    GET shows lastAccessedAt; PATCH merges shallowly, ignores ttlSeconds and
    omits createdAt; DELETE answers deleted and a second DELETE is 404.
    """
    created = await _create(
        http, defaults={"chain": "solana", "privacyLevel": "standard"}
    )
    sid = created["sessionId"]
    await clock.advance(10)

    got = (await http.get(f"/v1/sessions/{sid}")).json()["data"]
    patched = await http.patch(
        f"/v1/sessions/{sid}",
        json={
            "defaults": {"privacyLevel": "maximum", "unknown": 1},
            "ttlSeconds": 86400,
        },
    )
    deleted = await http.delete(f"/v1/sessions/{sid}")
    again = await http.delete(f"/v1/sessions/{sid}")

    assert got["lastAccessedAt"] == created["createdAt"] + 10_000
    assert got["expiresAt"] == created["expiresAt"]
    assert patched.status_code == 200
    assert set(patched.json()["data"]) == {
        "sessionId",
        "defaults",
        "expiresAt",
        "lastAccessedAt",
    }
    assert patched.json()["data"]["defaults"] == {
        "chain": "solana",
        "privacyLevel": "maximum",
    }
    assert patched.json()["data"]["expiresAt"] == created["expiresAt"]
    assert deleted.json() == {
        "success": True,
        "data": {"sessionId": sid, "deleted": True},
    }
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "SESSION_NOT_FOUND"


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_malformed_id_is_400(http: httpx.AsyncClient, method: str) -> None:
    """
    An id that does not match ^sess_[0-9a-f]{64}$ is 400, not 404.
    """
    response = await http.request(
        method,
        "/v1/sessions/sess_nope",
        json={"defaults": {}} if method == "PATCH" else None,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid session ID format. Expected sess_ + 64 hex chars."
    )


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_expired_session_is_404(
    http: httpx.AsyncClient, clock: ManualClock, emulator: SipherEmulator, method: str
) -> None:
    """
    Past expiresAt the session answers 404 SESSION_NOT_FOUND (never 410).
    """
    sid = (await _create(http, ttlSeconds=60))["sessionId"]
    await clock.advance(59)
    assert emulator.live_sessions() == {sid}
    await clock.advance(1)

    response = await http.request(
        method,
        f"/v1/sessions/{sid}",
        json={"defaults": {}} if method == "PATCH" else None,
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert emulator.live_sessions() == set()


async def test_other_key_gets_404(http: httpx.AsyncClient, server: ASGIServer) -> None:
    """
    Another key's session is 404, not 403: ownership is the API key.
    """
    sid = (await _create(http))["sessionId"]
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": ENTERPRISE_KEY}
    ) as other:
        response = await other.get(f"/v1/sessions/{sid}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SESSION_NOT_FOUND"


async def test_no_list_route(http: httpx.AsyncClient) -> None:
    """
    GET /v1/sessions does not exist: 404 NOT_FOUND naming the route.
    """
    response = await http.get("/v1/sessions")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "NOT_FOUND",
        "message": "Route GET /v1/sessions not found",
    }


async def test_session_header_applies_defaults_request_values_win(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    With a live X-Session-Id, defaults fill the keys the body lacks.
    """
    sid = (
        await _create(http, defaults={"chain": "ethereum", "privacyLevel": "shielded"})
    )["sessionId"]

    first = await http.post(
        "/v1/backends/compare",
        json={"operation": "stealth_privacy"},
        headers={"X-Session-Id": sid},
    )
    second = await http.post(
        "/v1/backends/compare",
        json={"operation": "stealth_privacy", "chain": "solana"},
        headers={"X-Session-Id": sid},
    )

    assert first.json()["data"]["chain"] == "ethereum"
    assert second.json()["data"]["chain"] == "solana"
    assert emulator.effective_bodies[0]["privacyLevel"] == "shielded"


async def test_session_header_silently_ignored(
    http: httpx.AsyncClient,
    server: ASGIServer,
    clock: ManualClock,
    emulator: SipherEmulator,
) -> None:
    """
    An unknown, malformed, foreign or expired id is ignored: 200 without defaults.
    """
    sid = (await _create(http, defaults={"chain": "ethereum"}, ttlSeconds=60))[
        "sessionId"
    ]
    body = {"operation": "stealth_privacy"}
    chains = []
    for header in (GHOST, "garbage"):
        r = await http.post(
            "/v1/backends/compare", json=body, headers={"X-Session-Id": header}
        )
        chains.append((r.status_code, r.json()["data"]["chain"]))
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": ENTERPRISE_KEY}
    ) as other:
        r = await other.post(
            "/v1/backends/compare", json=body, headers={"X-Session-Id": sid}
        )
        chains.append((r.status_code, r.json()["data"]["chain"]))
    await clock.advance(60)
    r = await http.post(
        "/v1/backends/compare", json=body, headers={"X-Session-Id": sid}
    )
    chains.append((r.status_code, r.json()["data"]["chain"]))

    assert chains == [(200, "solana")] * 4
    assert all("chain" not in b for b in emulator.effective_bodies)


async def test_rate_limit_by_ip_with_retry_after(
    server: ASGIServer, clock: ManualClock, emulator: SipherEmulator
) -> None:
    """
    The 101st request in a window is 429 RATE_LIMIT_EXCEEDED with Retry-After,
    even without a key (the limiter runs before auth); the window then resets.
    """
    emulator.rate_limit = 3
    async with httpx.AsyncClient(base_url=server.url) as client:
        statuses = [(await client.get("/v1/health")).status_code for _ in range(3)]
        limited = await client.get("/v1/sessions/" + GHOST)
        await clock.advance(60)
        after = await client.get("/v1/health")

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["RateLimit-Policy"] == "3;w=60"
    assert limited.json()["error"] == {
        "code": "RATE_LIMIT_EXCEEDED",
        "message": "Too many requests, please try again later",
        "details": {"retryAfter": 60, "limit": 3},
    }
    assert after.status_code == 200


async def test_daily_session_quota(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    Past the per-category daily quota, 429 DAILY_QUOTA_EXCEEDED; failed
    requests do not count.
    """
    emulator.daily_quotas = {"pro": (100, 2)}
    await http.get(f"/v1/sessions/{GHOST}")  # 404: not counted
    await _create(http)
    await _create(http)

    response = await http.post("/v1/sessions", json={"defaults": {}})

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "DAILY_QUOTA_EXCEEDED"
    assert error["details"]["category"] == "session"
    assert error["details"]["current"] == 2
    assert error["details"]["tier"] == "pro"
    assert error["details"]["resetAt"].endswith("T00:00:00.000Z")
    assert error["details"]["limit"] == 2
    assert error["message"] == (
        f"Daily quota exceeded. Used 2/2 operations. "
        f"Resets at {error['details']['resetAt']}."
    )


async def test_quota_backend_down_fails_closed(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    A failed quota backend answers 503 SERVICE_UNAVAILABLE.
    """
    emulator.quota_backend_down = True

    response = await http.post("/v1/sessions", json={"defaults": {}})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_shutdown_answers_503_except_health(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    While shutting down every path but health and ready is 503.
    """
    emulator.shutting_down = True

    create = await http.post("/v1/sessions", json={"defaults": {}})
    health = await http.get("/v1/health")

    assert create.status_code == 503
    assert health.json()["data"]["status"] == "shutting_down"


async def test_request_id_echoed_and_generated(http: httpx.AsyncClient) -> None:
    """
    Every response has X-Request-ID; a client's own is echoed back.
    """
    mine = await http.get("/v1/health", headers={"X-Request-ID": "abc-123"})
    theirs = await http.get("/v1/health")

    assert mine.headers["X-Request-ID"] == "abc-123"
    assert theirs.headers["X-Request-ID"]


async def test_restart_and_kill_lose_sessions(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    Control methods drop sessions server-side (a restart without Redis).
    """
    a = (await _create(http))["sessionId"]
    b = (await _create(http))["sessionId"]
    emulator.kill(a)
    assert emulator.live_sessions() == {b}
    emulator.restart()

    response = await http.get(f"/v1/sessions/{b}")

    assert response.status_code == 404
    assert emulator.live_sessions() == set()


async def test_lru_eviction(http: httpx.AsyncClient, emulator: SipherEmulator) -> None:
    """
    Beyond max_sessions the least recently used session is evicted.
    """
    emulator.max_sessions = 2
    a = (await _create(http))["sessionId"]
    b = (await _create(http))["sessionId"]
    await http.get(f"/v1/sessions/{a}")
    c = (await _create(http))["sessionId"]

    assert emulator.live_sessions() == {a, c}
    assert b not in emulator.live_sessions()


# -- where the emulator follows the real server (its routes and middleware) ------


async def test_json_sent_as_text_plain_is_not_parsed(http: httpx.AsyncClient) -> None:
    """
    express.json() parses only a JSON content type: a JSON body sent as
    text/plain leaves the body undefined, which validation refuses.
    """
    response = await http.post(
        "/v1/sessions",
        content=b'{"defaults": {}}',
        headers={"Content-Type": "text/plain"},
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == "Invalid request data"
    assert error["details"][0]["message"].endswith("received undefined")


async def test_body_over_1_mib_is_a_500(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    body-parser's 413 reaches the error handler, which answers 500.
    """
    big = b'{"defaults": {}, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = await http.post(
        "/v1/sessions", content=big, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "message": "An unexpected error occurred",
    }
    assert emulator.live_sessions() == set()


async def test_patch_checks_the_body_before_the_id(http: httpx.AsyncClient) -> None:
    """
    validateRequest runs before the handler's id check.
    """
    response = await http.patch("/v1/sessions/not-an-id", json={"defaults": 1})
    valid_body = await http.patch("/v1/sessions/not-an-id", json={"defaults": {}})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid request data"
    assert valid_body.json()["error"]["message"] == (
        "Invalid session ID format. Expected sess_ + 64 hex chars."
    )


async def test_message_texts_are_the_servers(http: httpx.AsyncClient) -> None:
    """
    The 404, invalid-JSON and validation messages read as the server's do.
    """
    missing = await http.get(f"/v1/sessions/{GHOST}")
    garbled = await http.post(
        "/v1/sessions", content=b"{", headers={"Content-Type": "application/json"}
    )
    invalid = await http.post("/v1/sessions", json={"defaults": {"chain": "mars"}})

    assert missing.json()["error"] == {
        "code": "SESSION_NOT_FOUND",
        "message": f"Session not found: {GHOST}",
    }
    assert garbled.json()["error"] == {
        "code": "INVALID_JSON",
        "message": "Request body is not valid JSON",
    }
    assert invalid.json()["error"]["message"] == "Invalid request data"


async def test_quota_backend_message(
    http: httpx.AsyncClient, emulator: SipherEmulator
) -> None:
    """
    The fail-closed 503 carries the metering middleware's message.
    """
    emulator.quota_backend_down = True

    response = await http.get(f"/v1/sessions/{GHOST}")

    assert response.json()["error"]["message"] == (
        "Usage quota service temporarily unavailable. Please retry."
    )


async def test_session_can_be_forgotten_half_a_second_before_expiry(
    http: httpx.AsyncClient, clock: ManualClock, emulator: SipherEmulator
) -> None:
    """
    Each access stores the session with its remaining seconds rounded: read
    at 0.6 s, a 60 s session is kept 59 s more, until 59.6 s.
    """
    sid = str((await _create(http, ttlSeconds=60))["sessionId"])
    await clock.advance(0.6)
    assert (await http.get(f"/v1/sessions/{sid}")).status_code == 200
    await clock.advance(59.0)
    kept = emulator.live_sessions()
    await clock.advance(0.01)

    assert kept == {sid}
    assert emulator.live_sessions() == set()
    assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404


async def test_retry_after_rounds_up_whole_milliseconds() -> None:
    """
    express-rate-limit counts in Date.now() milliseconds: 59,000 ms left is
    Retry-After 59, although 59.0004 s of float time would round up to 60.
    """
    clock = ManualClock(start=1_800_000_000.0008)
    emulator = SipherEmulator(clock=clock.time, rate_limit=1)
    async with (
        serve_asgi(emulator.app) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        await client.get("/v1/health")
        await clock.advance(0.9996)
        limited = await client.get("/v1/health")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "59"
    assert limited.json()["error"]["details"]["retryAfter"] == 60
