# Copyright 2026 The tether developers. MIT license.
"""
The emulator's answers (and the provider's requests) match Edgegap's Swagger file.

``spec/edgegap-swagger-2024.yaml`` is the Swagger 2.0 description of the
Edgegap API (2024). Where it disagrees with what the service is documented to
send, the emulator follows the service and this module says so:

* **no nulls**: the spec declares no field nullable, and the service's answers,
  validated through a proxy, have none: a field without a value
  (``authorization_token``, ``error``, ``relay`` while a session initializes,
  ``webhook_url`` when none was given, the page numbers that do not exist) is
  left out. Everything is validated strictly against the file.
* **total_count** is missing from ``RelaySessionListResponse`` in the 2024 file
  but required by the current OpenAPI document; the emulator sends it (extra
  properties are allowed by the schema).
* **?page=N** is not declared on the list path, nor is a 400 on it: a bad page
  is answered as the first; the response is paginated anyway.
* **authorize-user on an unknown session**: no 404 is declared for that path,
  so the emulator answers 400.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema
import pytest
import yaml


if TYPE_CHECKING:
    from collections.abc import Callable

    from tether.abc import CreateRequest
    from tether.testing import ManualClock
    from tether_relay import RelayProvider
    from tether_relay.emulator import RelayEmulator


SPEC_PATH = pathlib.Path(__file__).parent / "spec" / "edgegap-swagger-2024.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def _validator(schema: dict[str, Any]) -> jsonschema.Validator:
    return jsonschema.Draft4Validator({**schema, "definitions": SPEC["definitions"]})


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    if path.startswith("/v1/relays/sessions/"):
        path = "/v1/relays/sessions/{session_id}"
    return path, SPEC["paths"][path][method.lower()]


def check(response: httpx.Response) -> list[str]:
    """
    Validate *response* against the spec; return the error messages.
    """
    method = response.request.method
    path, operation = _operation(method, response.request.url.path)
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, (
        f"{method} {path} answered undeclared {response.status_code}"
    )
    if "schema" not in declared:
        assert response.content == b""
        return []
    validator = _validator(declared["schema"])
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(response.json())
    ]


@pytest.fixture(name="exercise")
def _exercise(
    http: httpx.AsyncClient, emulator: RelayEmulator, clock: ManualClock
) -> Callable[[], Any]:
    """
    Drive every route through its success and error answers; return the responses.
    """

    async def run() -> list[httpx.Response]:
        seen: list[httpx.Response] = []

        async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = await http.request(method, path, **kwargs)
            seen.append(response)
            return response

        emulator.ready_delay = 1.0
        emulator.page_size = 2
        base = "/v1/relays/sessions"
        created = await call(
            "POST",
            base,
            json={
                "users": [{"ip": "1.1.1.1"}],
                "filters": [
                    {"field": "region", "values": ["eu"], "filter_type": "any"}
                ],
                "webhook_url": "https://example.com/hook",
            },
        )
        sid = created.json()["session_id"]
        await call("GET", f"{base}/{sid}")  # initializing
        await clock.advance(1.0)
        await call("GET", f"{base}/{sid}")  # ready
        for _ in range(3):
            await call("POST", base, json={"users": [{"ip": "8.8.8.8"}]})
        await call("GET", base)
        await call("GET", base, params={"page": 2})
        await call("GET", base, params={"page": 0})
        authorized = await call(
            "POST",
            f"{base}:authorize-user",
            json={"session_id": sid, "user_ip": "9.9.9.9"},
        )
        token = authorized.json()["session_user"]["authorization_token"]
        await call(
            "POST",
            f"{base}:authorize-user",
            json={"session_id": sid, "user_ip": "9.9.9.9"},
        )
        await call("POST", f"{base}:authorize-user", json={"session_id": sid})
        await call(
            "POST",
            f"{base}:revoke-user",
            json={"session_id": sid, "authorization_token": token},
        )
        await call(
            "POST",
            f"{base}:revoke-user",
            json={"session_id": sid, "authorization_token": token},
        )
        await call("POST", f"{base}:revoke-user", json={"session_id": sid})
        emulator.revoke_status = 204
        other = emulator.user_token(sid, "1.1.1.1")
        await call(
            "POST",
            f"{base}:revoke-user",
            json={"session_id": sid, "authorization_token": other},
        )
        await call("POST", base, json={"users": []})
        emulator.fail_with = "Session failed"
        await clock.advance(1.0)
        failed = await call("POST", base, json={"users": [{"ip": "1.1.1.1"}]})
        await clock.advance(1.0)
        await call("GET", f"{base}/{failed.json()['session_id']}")
        await call("DELETE", f"{base}/{sid}")
        await call("DELETE", f"{base}/{sid}")
        await call("GET", f"{base}/{sid}")
        async with httpx.AsyncClient(base_url=str(http.base_url)) as anonymous:
            for method, path in [
                ("GET", base),
                ("POST", base),
                ("DELETE", f"{base}/x"),
            ]:
                response = await anonymous.request(method, path)
                seen.append(response)
        return seen

    return run


async def test_every_emulator_answer_matches_the_spec(
    exercise: Callable[[], Any],
) -> None:
    """
    Bodies and status codes of every route match the Swagger file, strictly.
    """
    responses = await exercise()
    statuses = {r.status_code for r in responses}

    problems = {
        f"{r.request.method} {r.request.url.path} {r.status_code}": errors
        for r in responses
        if (errors := check(r))
    }

    assert problems == {}
    assert {200, 204, 400, 401, 404, 409} <= statuses


async def test_a_bad_page_and_unknown_create_fields_are_not_refused(
    http: httpx.AsyncClient, emulator: RelayEmulator
) -> None:
    """
    The spec declares no 400 for the list and allows other create fields.
    """
    created = await http.post(
        "/v1/relays/sessions", json={"users": [{"ip": "1.1.1.1"}], "extra": 1}
    )
    pages = [
        await http.get("/v1/relays/sessions", params={"page": p}) for p in (0, "x")
    ]

    assert created.status_code == 200
    assert [r.status_code for r in pages] == [200, 200]
    assert [r.json()["pagination"]["number"] for r in pages] == [1, 1]
    assert all(check(r) == [] for r in [created, *pages])


async def test_provider_requests_match_the_spec(
    make_provider: Callable[..., RelayProvider],
    emulator: RelayEmulator,
    new_request: Callable[..., CreateRequest],
    as_session: Callable[..., Any],
) -> None:
    """
    Every body the provider sends validates against the payload definitions.
    """
    provider = make_provider()
    remote = await provider.create(
        new_request(
            provider,
            users=["1.1.1.1", "8.8.8.8"],
            filters=[{"field": "region", "values": ["eu"], "filter_type": "not"}],
            webhook_url="https://example.com/hook",
        )
    )
    session = as_session(remote)
    await provider.update(session, provider.parse_update({"authorize": ["9.9.9.9"]}))
    await provider.revoke_user(session, "8.8.8.8")
    payloads = {
        ("POST", "/v1/relays/sessions"): "RelaySessionCreatePayload",
        ("POST", "/v1/relays/sessions:authorize-user"): "RelayUserAuthorizePayload",
        ("POST", "/v1/relays/sessions:revoke-user"): "RelayUserRevokePayload",
    }

    checked = []
    for method, path, body in emulator.received:
        name = payloads.get((method, path))
        if name is None:
            assert body is None, f"{method} {path} should carry no body"
            continue
        _validator({"$ref": f"#/definitions/{name}"}).validate(body)
        checked.append(name)

    assert set(payloads.values()) == set(checked)
