# Copyright 2026 The tether developers. MIT license.
"""
The emulator speaks Edgegap's relay API over a real socket, as documented.
"""

from __future__ import annotations

import math

import httpx
import pytest

from tether.testing import ASGIServer, Fault, ManualClock
from tether_relay.emulator import PRIVATE_IP_ERROR, RelayEmulator


CREATE = "/v1/relays/sessions"
AUTHORIZE = "/v1/relays/sessions:authorize-user"
REVOKE = "/v1/relays/sessions:revoke-user"


async def _create(http: httpx.AsyncClient, *ips: str) -> dict:
    response = await http.post(CREATE, json={"users": [{"ip": ip} for ip in ips]})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "relay-secret-token-0123456789",  # no "token " prefix
        "Bearer relay-secret-token-0123456789",
        "token wrong",
        "token",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", CREATE),
        ("POST", CREATE),
        ("GET", "/v1/relays/sessions/abc-S"),
        ("DELETE", "/v1/relays/sessions/abc-S"),
        ("POST", AUTHORIZE),
        ("POST", REVOKE),
    ],
)
async def test_bad_auth_is_401_with_message(
    server: ASGIServer, header: str | None, method: str, path: str
) -> None:
    """
    Every route answers 401 {"message"} to a missing or malformed credential.
    """
    headers = {} if header is None else {"Authorization": header}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        response = await client.request(method, path, json={})

    assert response.status_code == 401
    assert isinstance(response.json()["message"], str)


async def test_capitalised_token_scheme_is_accepted(server: ASGIServer) -> None:
    """
    "Token <TOKEN>" works as well as "token <TOKEN>" (samples use both).
    """
    async with httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": "Token relay-secret-token-0123456789"},
    ) as client:
        response = await client.get(CREATE)

    assert response.status_code == 200


async def test_standard_api_token_is_forbidden(server: ASGIServer) -> None:
    """
    A standard (non-relay) Edgegap token is known but refused with 403.
    """
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": "token standard-token"}
    ) as client:
        response = await client.get(CREATE)

    assert response.status_code == 403
    assert "relay" in response.json()["message"]


async def test_new_session_initializes_then_links_on_the_clock(
    http: httpx.AsyncClient, emulator: RelayEmulator, clock: ManualClock
) -> None:
    """
    A new session is Initializing (no token, relay or users) until ready_delay
    passes; fields without a value are left out, never null.
    """
    emulator.ready_delay = 5.0
    created = await _create(http, "1.1.1.1", "8.8.8.8")

    assert {
        "status": "Initializing",
        "ready": False,
        "linked": False,
        "session_users": [],
    }.items() <= created.items()
    assert not {"authorization_token", "error", "relay", "webhook_url"} & set(created)
    assert None not in created.values()
    assert created["session_id"].endswith("-S")

    await clock.advance(4.9)
    still = (await http.get(f"{CREATE}/{created['session_id']}")).json()
    assert still["ready"] is False

    await clock.advance(0.1)
    ready = (await http.get(f"{CREATE}/{created['session_id']}")).json()

    assert ready["ready"] is True
    assert ready["linked"] is True
    assert ready["status"] == "Linked"
    assert [u["ip_address"] for u in ready["session_users"]] == ["1.1.1.1", "8.8.8.8"]
    assert ready["relay"]["ports"]["server"]["protocol"] == "UDP"


async def test_tokens_are_unsigned_32_bit_above_2_31(
    http: httpx.AsyncClient,
) -> None:
    """
    Session and user tokens are JSON integers between 2**31 and 2**32.
    """
    created = await _create(http, "1.1.1.1", "8.8.8.8")
    tokens = [created["authorization_token"]] + [
        u["authorization_token"] for u in created["session_users"]
    ]

    assert all(isinstance(t, int) and 2**31 < t < 2**32 for t in tokens)


async def test_private_ip_session_fails_with_error(
    http: httpx.AsyncClient, emulator: RelayEmulator, clock: ManualClock
) -> None:
    """
    A session with a non-public IP is accepted, then reports an error.
    """
    emulator.ready_delay = 1.0
    created = await _create(http, "10.0.0.1")
    await clock.advance(1.0)
    body = (await http.get(f"{CREATE}/{created['session_id']}")).json()

    assert body["error"] == PRIVATE_IP_ERROR
    assert body["ready"] is False


async def test_fail_with_knob(http: httpx.AsyncClient, emulator: RelayEmulator) -> None:
    """
    fail_with makes every new session end in that error.
    """
    emulator.fail_with = "Session failed"
    created = await _create(http, "1.1.1.1")

    assert created["error"] == "Session failed"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"users": []},
        {"users": "1.1.1.1"},
        {"users": ["1.1.1.1"]},
        {"users": [{"ip": "not-an-ip"}]},
        {"users": [{"ip": "1.1.1.1", "name": "x"}]},
        {"users": [{"ip": "1.1.1.1"}], "filters": [{"field": "x"}]},
        {
            "users": [{"ip": "1.1.1.1"}],
            "filters": [{"field": "x", "values": ["a"], "filter_type": "some"}],
        },
        {"users": [{"ip": "1.1.1.1"}], "webhook_url": 3},
    ],
)
async def test_create_validation_is_400_with_message(
    http: httpx.AsyncClient, emulator: RelayEmulator, body: object
) -> None:
    """
    Bad create bodies get 400 {"message"} and create nothing.
    """
    response = await http.post(CREATE, json=body)

    assert response.status_code == 400
    assert isinstance(response.json()["message"], str)
    assert emulator.live_sessions() == []


async def test_get_and_delete_unknown_are_404(http: httpx.AsyncClient) -> None:
    """
    GET and DELETE of an unknown session answer 404 {"message"}.
    """
    got = await http.get(f"{CREATE}/nope-S")
    deleted = await http.delete(f"{CREATE}/nope-S")

    assert (got.status_code, deleted.status_code) == (404, 404)
    assert "message" in got.json()
    assert "message" in deleted.json()


async def test_delete_is_204_then_404(
    http: httpx.AsyncClient, emulator: RelayEmulator
) -> None:
    """
    DELETE answers 204 with no body; the session is gone afterwards.
    """
    created = await _create(http, "1.1.1.1")
    first = await http.delete(f"{CREATE}/{created['session_id']}")
    second = await http.delete(f"{CREATE}/{created['session_id']}")

    assert first.status_code == 204
    assert first.content == b""
    assert second.status_code == 404
    assert emulator.live_sessions() == []
    assert [created["session_id"]] == emulator.deleted_sessions()


async def test_list_paginates(http: httpx.AsyncClient, emulator: RelayEmulator) -> None:
    """
    The list has sessions, total_count and pagination; ?page=N walks it.
    """
    emulator.page_size = 2
    ids = [(await _create(http, "1.1.1.1"))["session_id"] for _ in range(5)]
    pages = []
    for page in (1, 2, 3):
        response = await http.get(CREATE, params={"page": page})
        assert response.status_code == 200
        pages.append(response.json())

    assert ids == [s["session_id"] for p in pages for s in p["sessions"]]
    assert {5} == {p["total_count"] for p in pages}
    assert pages[0]["pagination"] == {
        "number": 1,
        "next_page_number": 2,
        "paginator": {"num_pages": 3},
        "has_next": True,
        "has_previous": False,
    }
    assert pages[2]["pagination"]["has_next"] is False
    assert "next_page_number" not in pages[2]["pagination"]


async def test_empty_list_has_one_page(http: httpx.AsyncClient) -> None:
    """
    With no sessions the list is empty, on a single page.
    """
    body = (await http.get(CREATE)).json()

    assert body["sessions"] == []
    assert body["total_count"] == 0
    assert body["pagination"]["paginator"]["num_pages"] == 1


@pytest.mark.parametrize("page", ["0", "-1", "x"])
async def test_bad_page_is_the_first(http: httpx.AsyncClient, page: str) -> None:
    """
    The spec declares no page parameter and no 400 here: a bad page is page 1.
    """
    response = await http.get(CREATE, params={"page": page})

    assert response.status_code == 200
    assert response.json()["pagination"]["number"] == 1


async def test_authorize_returns_session_user_with_token(
    http: httpx.AsyncClient, emulator: RelayEmulator
) -> None:
    """
    authorize-user answers 200 with the new user's token in session_user.
    """
    sid = (await _create(http, "1.1.1.1"))["session_id"]
    response = await http.post(
        AUTHORIZE, json={"session_id": sid, "user_ip": "9.9.9.9"}
    )
    body = response.json()

    assert response.status_code == 200
    assert body["session_user"]["ip_address"] == "9.9.9.9"
    assert (
        emulator.user_token(sid, "9.9.9.9")
        == body["session_user"]["authorization_token"]
    )
    assert body["session_user"]["authorization_token"] > 2**31


async def test_authorize_twice_is_409(http: httpx.AsyncClient) -> None:
    """
    Authorizing an IP that is already on the session is a 409 conflict.
    """
    sid = (await _create(http, "1.1.1.1"))["session_id"]
    response = await http.post(
        AUTHORIZE, json={"session_id": sid, "user_ip": "1.1.1.1"}
    )

    assert response.status_code == 409
    assert "message" in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"session_id": "x-S"},
        {"user_ip": "1.1.1.1"},
        {"session_id": "unknown-S", "user_ip": "1.1.1.1"},
        {"session_id": "SID", "user_ip": "300.1.1.1"},
    ],
)
async def test_authorize_validation_is_400(http: httpx.AsyncClient, body: dict) -> None:
    """
    Missing fields, an unknown session or a bad IP get 400 on authorize-user.
    """
    sid = (await _create(http, "1.1.1.1"))["session_id"]
    if body.get("session_id") == "SID":
        body = {**body, "session_id": sid}
    response = await http.post(AUTHORIZE, json=body)

    assert response.status_code == 400
    assert "message" in response.json()


async def test_authorize_before_ready_is_400(
    http: httpx.AsyncClient, emulator: RelayEmulator
) -> None:
    """
    A session that is still initializing cannot take users yet.
    """
    emulator.ready_delay = 10.0
    sid = (await _create(http, "1.1.1.1"))["session_id"]
    response = await http.post(
        AUTHORIZE, json={"session_id": sid, "user_ip": "9.9.9.9"}
    )

    assert response.status_code == 400


@pytest.mark.parametrize("revoke_status", [200, 204])
async def test_revoke_by_user_token(
    http: httpx.AsyncClient, emulator: RelayEmulator, revoke_status: int
) -> None:
    """
    revoke-user takes the user's token and answers 200 (session) or 204.
    """
    emulator.revoke_status = revoke_status
    sid = (await _create(http, "1.1.1.1", "8.8.8.8"))["session_id"]
    token = emulator.user_token(sid, "8.8.8.8")
    response = await http.post(
        REVOKE, json={"session_id": sid, "authorization_token": token}
    )

    assert revoke_status == response.status_code
    assert emulator.user_token(sid, "8.8.8.8") is None
    if revoke_status == 200:
        assert [u["ip_address"] for u in response.json()["session_users"]] == [
            "1.1.1.1"
        ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"session_id": "SID", "authorization_token": "123"}, 400),
        ({"session_id": "SID", "authorization_token": True}, 400),
        ({"session_id": "SID", "authorization_token": 1}, 404),
        ({"session_id": "unknown-S", "authorization_token": 1}, 404),
    ],
)
async def test_revoke_errors(http: httpx.AsyncClient, body: dict, status: int) -> None:
    """
    revoke-user: 400 on a malformed body, 404 on an unknown session or token.
    """
    sid = (await _create(http, "1.1.1.1"))["session_id"]
    if body.get("session_id") == "SID":
        body = {**body, "session_id": sid}
    response = await http.post(REVOKE, json=body)

    assert status == response.status_code
    assert "message" in response.json()


async def test_kill_and_fail_controls(
    http: httpx.AsyncClient, emulator: RelayEmulator
) -> None:
    """
    kill() removes a session server-side; fail() makes it report an error.
    """
    a = (await _create(http, "1.1.1.1"))["session_id"]
    b = (await _create(http, "1.1.1.1"))["session_id"]
    emulator.kill(a)
    emulator.fail(b, "relay crashed")

    assert (await http.get(f"{CREATE}/{a}")).status_code == 404
    assert (await http.get(f"{CREATE}/{b}")).json()["error"] == "relay crashed"
    assert [b] == emulator.live_sessions()


async def test_fault_injection(
    http: httpx.AsyncClient, emulator: RelayEmulator
) -> None:
    """
    The FaultInjector in front of the app fails requests on demand.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = {Fault.SERVER_ERROR}
    response = await http.get(CREATE)

    assert response.status_code == 503
    assert emulator.faults.injected[Fault.SERVER_ERROR] == 1


def test_never_ready_with_infinite_delay(clock: ManualClock) -> None:
    """
    ready_delay=inf keeps sessions initializing forever.
    """
    emulator = RelayEmulator(clock=clock.time, ready_delay=math.inf)

    assert emulator.ready_delay == math.inf
    with pytest.raises(ValueError, match="revoke_status"):
        RelayEmulator(revoke_status=201)
