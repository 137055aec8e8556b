"""
The emulator, spoken to over a real socket with raw HTTP: every route, its
errors, and its bodies checked against the service's schemas.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tether.testing import ASGIServer, Fault, ManualClock
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"
OTHER_KEY = "instavm_sk_other_112233445566"
SCHEMAS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "spec" / "instavm-session-schemas.json").read_text()
)


def check(name: str, body: Any) -> None:
    """
    Validate *body* against one of the service's schemas (uuid format checked).
    """
    jsonschema.validate(
        body, SCHEMAS[name], format_checker=jsonschema.FormatChecker(formats=["uuid"])
    )


async def create(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {"api_key": KEY, **fields}
    check("CreateSessionRequest", body)
    response = await http.post("/v1/sessions/session", json=body)
    assert response.status_code == 200, response.text
    check("CreateSessionResponse", response.json())
    return str(response.json()["session_id"])


async def status(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await http.get(f"/v1/sessions/status/{sid}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    check("SessionStatus", body)
    return body


# -- create -------------------------------------------------------------------


async def test_create_returns_uuid_and_a_lazy_session(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    Create answers ``{"session_id": <uuid>}``; no VM exists until the first use.
    """
    sid = await create(http, vm_lifetime_seconds=60, vcpu_count=4, memory_mb=512)

    body = await status(http, sid)
    assert body["exists"] is True
    assert body["vm_assigned"] is False
    assert body["vm_id"] is None
    assert body["expires_in_seconds"] is None
    assert emulator.session(sid)["vcpu_count"] == 4
    assert sid in emulator.live_sessions()


async def test_create_applies_defaults(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    Without limits the session gets 300 s and 2 vCPUs.
    """
    sid = await create(http)

    snapshot = emulator.session(sid)
    assert (snapshot["vm_lifetime_seconds"], snapshot["vcpu_count"]) == (300, 2)


async def test_create_with_env_spawns_the_vm_at_once(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """
    ``env`` spawns the VM during create, so its lifetime starts counting.
    """
    sid = await create(http, vm_lifetime_seconds=60, env={"A": "1"})
    await clock.advance(10)

    body = await status(http, sid)
    assert body["vm_assigned"] is True
    assert body["vm_alive"] is True
    assert body["vm_status"] == "active"
    assert body["expires_in_seconds"] == 50
    assert body["uptime_seconds"] == 10


async def test_create_needs_api_key_in_body(http: httpx.AsyncClient) -> None:
    """
    The body's ``api_key`` is required even when the header carries a key.
    """
    response = await http.post("/v1/sessions/session", json={"vcpu_count": 2})

    assert response.status_code == 422
    check("HTTPValidationError", response.json())
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "api_key"], "missing")


async def test_create_rejects_bad_key(http: httpx.AsyncClient) -> None:
    """
    An unknown key in the body is 401 with the service's message.
    """
    response = await http.post("/v1/sessions/session", json={"api_key": "nope"})

    assert response.status_code == 401
    check("HTTPError", response.json())
    assert response.json() == {"detail": "Invalid API key or session expired"}


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("vm_lifetime_seconds", 19, "greater_than_equal"),
        ("vm_lifetime_seconds", 86401, "less_than_equal"),
        ("memory_mb", 64, "greater_than_equal"),
        ("memory_mb", 8193, "less_than_equal"),
        ("vcpu_count", 3, "literal_error"),
        ("vcpu_count", "two", "int_parsing"),
        ("vm_lifetime_seconds", 30.5, "int_from_float"),
        ("memory_mb", [1], "int_type"),
        ("metadata", "x", "dict_type"),
        ("env", {"A": 1}, "string_type"),
    ],
)
async def test_create_rejects_out_of_range_and_mistyped(
    http: httpx.AsyncClient, field: str, value: Any, error_type: str
) -> None:
    """
    Limits and types come back as FastAPI 422 bodies naming the field.
    """
    response = await http.post(
        "/v1/sessions/session", json={"api_key": KEY, field: value}
    )

    assert response.status_code == 422
    body = response.json()
    check("HTTPValidationError", body)
    assert body["detail"][0]["type"] == error_type
    assert body["detail"][0]["loc"][:2] == ["body", field]


async def test_create_rejects_invalid_json(http: httpx.AsyncClient) -> None:
    """
    A body that is not JSON is a 422 ``json_invalid``.
    """
    response = await http.post(
        "/v1/sessions/session",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    check("HTTPValidationError", response.json())
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_create_refuses_past_tier_limit(
    server: ASGIServer, clock: ManualClock
) -> None:
    """
    With a tier limit, one create too many is 403 with a string detail.
    """
    emulator = SandboxEmulator(clock=clock.time, api_keys=(KEY,), max_sessions=1)
    from tether.testing import serve_asgi  # noqa: PLC0415

    async with (
        serve_asgi(emulator.app) as srv,
        httpx.AsyncClient(base_url=srv.url) as http,
    ):
        await create(http)
        response = await http.post("/v1/sessions/session", json={"api_key": KEY})

    assert response.status_code == 403
    assert "limit" in response.json()["detail"]


# -- auth on the other routes ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/sessions/status/{sid}", None),
        ("GET", "/v1/sessions/sandboxes", None),
        ("POST", "/kill", {"session_id": "{sid}"}),
        ("POST", "/execute", {"session_id": "{sid}", "code": "print(1)"}),
        ("POST", "/execute_async", {"session_id": "{sid}", "code": "print(1)"}),
        ("GET", "/v1/executions/x", None),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong"])
async def test_routes_need_a_valid_header_key(  # noqa: PLR0917 -- parametrized
    http: httpx.AsyncClient,
    server: ASGIServer,
    method: str,
    path: str,
    body: dict[str, str] | None,
    key: str | None,
) -> None:
    """
    A missing key is 401 ``Not authenticated``; a wrong one is 401 with the
    service's message.
    """
    sid = await create(http)
    headers = {"X-API-Key": key} if key else {}
    payload = {k: v.format(sid=sid) for k, v in body.items()} if body else None
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as anon:
        response = await anon.request(method, path.format(sid=sid), json=payload)

    assert response.status_code == 401
    expected = (
        "Not authenticated" if key is None else "Invalid API key or session expired"
    )
    assert response.json() == {"detail": expected}


async def test_execute_accepts_the_key_in_the_body(
    http: httpx.AsyncClient, server: ASGIServer
) -> None:
    """
    ``CommandRequest.api_key`` authenticates ``/execute`` without the header.
    """
    sid = await create(http)
    async with httpx.AsyncClient(base_url=server.url) as anon:
        response = await anon.post(
            "/execute", json={"api_key": KEY, "session_id": sid, "code": "print(7)"}
        )

    assert response.status_code == 200
    assert response.json()["stdout"] == "7\n"


async def test_other_owners_session_is_403(
    http: httpx.AsyncClient, server: ASGIServer
) -> None:
    """
    Another key's session is 403 on status, kill and execute.
    """
    sid = await create(http)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": OTHER_KEY}
    ) as other:
        codes = [
            (await other.get(f"/v1/sessions/status/{sid}")).status_code,
            (await other.post("/kill", json={"session_id": sid})).status_code,
            (
                await other.post("/execute", json={"session_id": sid, "code": "x=1"})
            ).status_code,
        ]

    assert codes == [403, 403, 403]


# -- status ---------------------------------------------------------------------


async def test_status_of_unknown_session_does_not_exist(
    http: httpx.AsyncClient,
) -> None:
    """
    An unknown id answers 200 with ``exists: false``.
    """
    body = await status(http, str(uuid.uuid4()))

    assert body["exists"] is False
    assert body["vm_alive"] is False


async def test_status_timestamps_are_naive_iso(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """
    ``created_at`` is ISO 8601 without an offset, as the service writes it.
    """
    sid = await create(http)

    body = await status(http, sid)
    assert body["created_at"] == "2027-01-15T08:00:00"
    assert clock.time() == 1_800_000_000.0


async def test_responses_carry_the_emulator_date(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """
    The ``Date`` header follows the injected clock.
    """
    await clock.advance(3600)
    response = await http.get(f"/v1/sessions/status/{uuid.uuid4()}")

    assert response.headers["date"] == "Fri, 15 Jan 2027 09:00:00 GMT"


async def test_vm_dies_at_its_lifetime_and_execute_respawns_it(
    http: httpx.AsyncClient, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    The VM lives ``vm_lifetime_seconds`` from its spawn; afterwards status says
    dead (expires in 0), and the next execute boots a new VM, state lost.
    """
    sid = await create(http, vm_lifetime_seconds=30)
    await clock.advance(100)  # lazy: the clock starts at the first execute
    first = await http.post("/execute", json={"session_id": sid, "code": "x = 5"})
    assert first.status_code == 200
    vm1 = (await status(http, sid))["vm_id"]
    await clock.advance(29)
    assert (await status(http, sid))["vm_alive"] is True

    await clock.advance(1)
    dead = await status(http, sid)
    assert (dead["vm_alive"], dead["vm_status"], dead["expires_in_seconds"]) == (
        False,
        "expired",
        0,
    )
    assert dead["uptime_seconds"] == 30
    assert sid not in emulator.live_sessions()

    again = await http.post("/execute", json={"session_id": sid, "code": "print(x)"})
    assert "NameError" in again.json()["stderr"]
    body = await status(http, sid)
    assert body["vm_alive"] is True
    assert body["vm_id"] != vm1


# -- kill -----------------------------------------------------------------------


async def test_kill_ends_the_vm(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    ``/kill`` stops the VM; status reports it killed; a second kill is 404.
    """
    sid = await create(http, env={"A": "1"})
    response = await http.post("/kill", json={"session_id": sid})
    assert response.status_code == 200
    check("KillResponse", response.json())

    body = await status(http, sid)
    assert (body["vm_alive"], body["vm_status"]) == (False, "killed")
    assert sid not in emulator.live_sessions()
    again = await http.post("/kill", json={"session_id": sid})
    assert again.status_code == 404


async def test_kill_without_vm_is_404(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    A session that never got a VM answers 404 "no VM assigned".
    """
    sid = await create(http)
    response = await http.post("/kill", json={"session_id": sid})

    assert response.status_code == 404
    assert "No VM" in response.json()["detail"]
    assert sid not in emulator.live_sessions()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"session_id": "not-a-uuid"}, 400),
        ({"session_id": str(uuid.UUID(int=1))}, 404),
        ({}, 422),
    ],
)
async def test_kill_errors(
    http: httpx.AsyncClient, body: dict[str, str], code: int
) -> None:
    """
    Bad id format is 400, unknown 404, missing ``session_id`` 422.
    """
    response = await http.post("/kill", json=body)

    assert response.status_code == code
    check("HTTPValidationError" if code == 422 else "HTTPError", response.json())


# -- execute ----------------------------------------------------------------------


async def test_execute_is_deterministic_and_keeps_state(
    http: httpx.AsyncClient,
) -> None:
    """
    Simple prints give their output; variables persist in the VM.
    """
    sid = await create(http)
    first = await http.post(
        "/execute", json={"session_id": sid, "code": "x = 41\nprint('hi')"}
    )
    second = await http.post("/execute", json={"session_id": sid, "code": "print(x)"})

    check("CommandRequest", {"session_id": sid, "code": "print(x)", "timeout": 60})
    check("ExecuteResponse", first.json())
    assert first.json()["stdout"] == "hi\n"
    assert second.json()["stdout"] == "41\n"
    assert second.json()["stderr"] == ""


async def test_execute_sees_env_and_runs_bash(http: httpx.AsyncClient) -> None:
    """
    ``env`` reaches the VM: Python's ``os.environ`` and bash's ``$VAR``.
    """
    sid = await create(http, env={"GREETING": "hello"})
    py = await http.post(
        "/execute",
        json={"session_id": sid, "code": "import os\nprint(os.environ['GREETING'])"},
    )
    sh = await http.post(
        "/execute",
        json={"session_id": sid, "command": "echo $GREETING world", "language": "bash"},
    )

    assert py.json()["stdout"] == "hello\n"
    assert sh.json()["stdout"] == "hello world\n"


async def test_execute_reports_exceptions_on_stderr(http: httpx.AsyncClient) -> None:
    """
    A raised exception is a 200 with a traceback on stderr.
    """
    sid = await create(http)
    response = await http.post(
        "/execute", json={"session_id": sid, "code": "raise ValueError('boom')"}
    )

    assert response.status_code == 200
    assert response.json()["stderr"].endswith("ValueError: boom\n")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": "print(1)", "timeout": 0}, 422),
        ({"code": "print(1)", "timeout": 601}, 422),
        ({}, 400),
        ({"code": "print(1)", "session_id": None}, 400),
        ({"code": "print(1)", "session_id": "bad"}, 400),
        ({"code": "print(1)", "session_id": str(uuid.UUID(int=2))}, 404),
    ],
)
async def test_execute_errors(
    http: httpx.AsyncClient, body: dict[str, Any], code: int
) -> None:
    """
    Timeout outside 1..600 is 422; missing code or session 400; unknown 404.
    """
    sid = await create(http)
    response = await http.post("/execute", json={"session_id": sid, **body})

    assert response.status_code == code
    check("HTTPValidationError" if code == 422 else "HTTPError", response.json())


async def test_execute_after_kill_is_404(http: httpx.AsyncClient) -> None:
    """
    A killed session cannot run code any more.
    """
    sid = await create(http, env={})
    await http.post("/kill", json={"session_id": sid})
    response = await http.post("/execute", json={"session_id": sid, "code": "x=1"})

    assert response.status_code == 404


async def test_execute_async_completes_after_polling(
    http: httpx.AsyncClient,
) -> None:
    """
    ``/execute_async`` gives a task id; polling shows incomplete, then output.
    """
    sid = await create(http)
    started = await http.post(
        "/execute_async", json={"session_id": sid, "code": "print('later')"}
    )
    check("ExecuteAsyncResponse", started.json())
    task_id = started.json()["task_id"]

    first = (await http.get(f"/v1/executions/{task_id}")).json()
    second = (await http.get(f"/v1/executions/{task_id}")).json()
    check("Execution", first)
    check("Execution", second)
    assert first["is_complete"] is False
    assert (second["is_complete"], second["serialized_stdout"]) == (True, "later\n")
    missing = await http.get("/v1/executions/nope")
    assert missing.status_code == 404


# -- sandboxes ----------------------------------------------------------------------


async def test_sandboxes_filters_by_metadata_containment(
    http: httpx.AsyncClient, server: ASGIServer
) -> None:
    """
    ``metadata`` is matched by JSON containment; other keys' sessions never show.
    """
    a = await create(http, metadata={"team": "x", "tags": ["a", "b"], "n": 1})
    b = await create(http, metadata={"team": "y"})
    async with httpx.AsyncClient(base_url=server.url) as other:
        await other.post("/v1/sessions/session", json={"api_key": OTHER_KEY})

    everything = (await http.get("/v1/sessions/sandboxes")).json()
    check("SandboxList", everything)
    assert {row["sandbox_id"] for row in everything} == {a, b}
    query = {"metadata": json.dumps({"tags": ["b"], "n": 1})}
    hits = (await http.get("/v1/sessions/sandboxes", params=query)).json()
    assert [row["sandbox_id"] for row in hits] == [a]
    assert hits[0]["template_id"] == "snap2"
    assert hits[0]["status"] == "created"


async def test_sandboxes_limit_and_errors(http: httpx.AsyncClient) -> None:
    """
    ``limit`` caps the array (1..1000, else 422); bad metadata JSON is 400.
    """
    for _ in range(3):
        await create(http)

    limited = await http.get("/v1/sessions/sandboxes", params={"limit": 2})
    assert len(limited.json()) == 2
    too_big = await http.get("/v1/sessions/sandboxes", params={"limit": 1001})
    assert too_big.status_code == 422
    check("HTTPValidationError", too_big.json())
    assert too_big.json()["detail"][0]["loc"] == ["query", "limit"]
    bad = await http.get("/v1/sessions/sandboxes", params={"metadata": "{"})
    assert bad.status_code == 400


# -- control methods and faults -------------------------------------------------------


async def test_replace_vm_knob_changes_vm_id_and_loses_state(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    ``replace_vm`` swaps the VM as the service would, dropping variables.
    """
    sid = await create(http)
    await http.post("/execute", json={"session_id": sid, "code": "y = 1"})
    old = (await status(http, sid))["vm_id"]

    new = emulator.replace_vm(sid)

    assert (await status(http, sid))["vm_id"] == new != old
    response = await http.post("/execute", json={"session_id": sid, "code": "print(y)"})
    assert "NameError" in response.json()["stderr"]


async def test_faults_are_seeded(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    The same seed injects the same faults on the same request sequence.
    """

    async def run(seed: int) -> list[int]:
        emulator.faults.reseed(seed)
        emulator.faults.rate = 0.5
        emulator.faults.kinds = {Fault.SERVER_ERROR, Fault.RATE_LIMIT}
        codes = []
        for _ in range(12):
            response = await http.get(f"/v1/sessions/status/{uuid.UUID(int=3)}")
            codes.append(response.status_code)
        return codes

    first = await run(7)
    second = await run(7)

    assert first == second
    assert {503, 429} <= set(first)
    assert 200 in first
