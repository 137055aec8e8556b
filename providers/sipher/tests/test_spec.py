"""
The emulator's responses (status codes and bodies) and the provider's request
bodies validate against Sipher's committed OpenAPI 3.1 export.

Where the spec is silent (401, 429 and 503 are undocumented on the session
routes; there is no ``GET /v1/sessions``), the body is checked against the
spec's ``ErrorResponse`` and the gap is listed in :data:`UNDOCUMENTED`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import yaml
from openapi_schema_validator import OAS31Validator

from tether.testing import ASGIServer
from tether_sipher import SipherProvider
from tether_sipher.emulator import FREE_KEY, PRO_KEY, SipherEmulator


SPEC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "spec" / "sipher-openapi.yaml").read_text(encoding="utf-8")
)
GHOST = "sess_" + "0" * 64

#: (method, path template, status) the service emits but the spec does not list.
UNDOCUMENTED = {
    ("POST", "/v1/sessions", 401),
    ("POST", "/v1/sessions", 429),
    ("POST", "/v1/sessions", 503),
    ("GET", "/v1/sessions/{id}", 401),
    ("GET", "/v1/sessions", 404),
}


def _validator(ref: str) -> OAS31Validator:
    # A $ref beside the components resolves inside this one document.
    return OAS31Validator({"$ref": ref, "components": SPEC["components"]})


def _check(method: str, template: str, response: httpx.Response) -> None:
    status = response.status_code
    body = response.json()
    operation = SPEC["paths"].get(template, {}).get(method.lower())
    documented = operation["responses"] if operation else {}
    if str(status) not in documented:
        assert (method, template, status) in UNDOCUMENTED, (method, template, status)
        _validator("#/components/schemas/ErrorResponse").validate(body)
        return
    assert (method, template, status) not in UNDOCUMENTED
    schema = documented[str(status)]["content"]["application/json"]["schema"]
    _validator(schema["$ref"]).validate(body)
    if status >= 400:
        # Every error is also the documented ErrorResponse envelope.
        _validator("#/components/schemas/ErrorResponse").validate(body)


@attrs.frozen
class _Ctx:
    pro: httpx.AsyncClient
    free: httpx.AsyncClient
    emulator: SipherEmulator


Case = Callable[[_Ctx], Awaitable[httpx.Response]]


async def _new_id(pro: httpx.AsyncClient) -> str:
    response = await pro.post("/v1/sessions", json={"defaults": {"chain": "solana"}})
    return str(response.json()["data"]["sessionId"])


async def _rate_limited(c: _Ctx) -> httpx.Response:
    c.emulator.rate_limit = 0
    return await c.pro.post("/v1/sessions", json={"defaults": {}})


async def _quota_down(c: _Ctx) -> httpx.Response:
    c.emulator.quota_backend_down = True
    return await c.pro.post("/v1/sessions", json={"defaults": {}})


async def _get(pro: httpx.AsyncClient) -> httpx.Response:
    return await pro.get(f"/v1/sessions/{await _new_id(pro)}")


async def _patch(pro: httpx.AsyncClient) -> httpx.Response:
    sid = await _new_id(pro)
    return await pro.patch(
        f"/v1/sessions/{sid}", json={"defaults": {"privacyLevel": "maximum"}}
    )


async def _patch_bad(pro: httpx.AsyncClient) -> httpx.Response:
    sid = await _new_id(pro)
    return await pro.patch(f"/v1/sessions/{sid}", json={"defaults": {"chain": "x"}})


async def _delete(pro: httpx.AsyncClient) -> httpx.Response:
    return await pro.delete(f"/v1/sessions/{await _new_id(pro)}")


CASES: dict[str, tuple[str, str, int, Case]] = {
    "create-201": (
        "POST",
        "/v1/sessions",
        201,
        lambda c: c.pro.post(
            "/v1/sessions", json={"defaults": {"chain": "base"}, "ttlSeconds": 600}
        ),
    ),
    "create-400-validation": (
        "POST",
        "/v1/sessions",
        400,
        lambda c: c.pro.post("/v1/sessions", json={"defaults": {"chain": "x"}}),
    ),
    "create-400-json": (
        "POST",
        "/v1/sessions",
        400,
        lambda c: c.pro.post(
            "/v1/sessions", content=b"{", headers={"Content-Type": "application/json"}
        ),
    ),
    "create-401": (
        "POST",
        "/v1/sessions",
        401,
        lambda c: c.pro.post(
            "/v1/sessions", json={"defaults": {}}, headers={"X-API-Key": "sk_pro_nope"}
        ),
    ),
    "create-403": (
        "POST",
        "/v1/sessions",
        403,
        lambda c: c.free.post("/v1/sessions", json={"defaults": {}}),
    ),
    "create-429": ("POST", "/v1/sessions", 429, _rate_limited),
    "create-503": ("POST", "/v1/sessions", 503, _quota_down),
    "get-200": ("GET", "/v1/sessions/{id}", 200, lambda c: _get(c.pro)),
    "get-400": (
        "GET",
        "/v1/sessions/{id}",
        400,
        lambda c: c.pro.get("/v1/sessions/sess_bad"),
    ),
    "get-401": (
        "GET",
        "/v1/sessions/{id}",
        401,
        lambda c: c.pro.get(f"/v1/sessions/{GHOST}", headers={"X-API-Key": ""}),
    ),
    "get-403": (
        "GET",
        "/v1/sessions/{id}",
        403,
        lambda c: c.free.get(f"/v1/sessions/{GHOST}"),
    ),
    "get-404": (
        "GET",
        "/v1/sessions/{id}",
        404,
        lambda c: c.pro.get(f"/v1/sessions/{GHOST}"),
    ),
    "patch-200": ("PATCH", "/v1/sessions/{id}", 200, lambda c: _patch(c.pro)),
    "patch-400": ("PATCH", "/v1/sessions/{id}", 400, lambda c: _patch_bad(c.pro)),
    "patch-403": (
        "PATCH",
        "/v1/sessions/{id}",
        403,
        lambda c: c.free.patch(f"/v1/sessions/{GHOST}", json={"defaults": {}}),
    ),
    "patch-404": (
        "PATCH",
        "/v1/sessions/{id}",
        404,
        lambda c: c.pro.patch(f"/v1/sessions/{GHOST}", json={"defaults": {}}),
    ),
    "delete-200": ("DELETE", "/v1/sessions/{id}", 200, lambda c: _delete(c.pro)),
    "delete-400": (
        "DELETE",
        "/v1/sessions/{id}",
        400,
        lambda c: c.pro.delete("/v1/sessions/SESS_X"),
    ),
    "delete-403": (
        "DELETE",
        "/v1/sessions/{id}",
        403,
        lambda c: c.free.delete(f"/v1/sessions/{GHOST}"),
    ),
    "delete-404": (
        "DELETE",
        "/v1/sessions/{id}",
        404,
        lambda c: c.pro.delete(f"/v1/sessions/{GHOST}"),
    ),
    "list-404": ("GET", "/v1/sessions", 404, lambda c: c.pro.get("/v1/sessions")),
    "compare-200": (
        "POST",
        "/v1/backends/compare",
        200,
        lambda c: c.pro.post(
            "/v1/backends/compare", json={"operation": "stealth_privacy"}
        ),
    ),
    "compare-400": (
        "POST",
        "/v1/backends/compare",
        400,
        lambda c: c.pro.post("/v1/backends/compare", json={"operation": "x"}),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_emulator_response_matches_spec(
    server: ASGIServer, emulator: SipherEmulator, case: str
) -> None:
    """
    Each route's status code is the one expected, and its body validates
    against the spec's schema for that status (or ErrorResponse for a gap).
    """
    method, template, status, make = CASES[case]
    async with (
        httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": PRO_KEY}) as pro,
        httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": FREE_KEY}) as free,
    ):
        response = await make(_Ctx(pro, free, emulator))

    assert response.status_code == status, response.text
    _check(method, template, response)


def test_every_documented_session_status_is_covered() -> None:
    """
    The cases above exercise every status the spec documents for the session
    routes.
    """
    documented = {
        (method.upper(), template, int(status))
        for template in ("/v1/sessions", "/v1/sessions/{id}")
        for method, operation in SPEC["paths"][template].items()
        for status in operation["responses"]
    }
    covered = {(m, t, s) for m, t, s, _ in CASES.values()}

    assert documented - covered == set()


def test_session_defaults_enums_match_spec() -> None:
    """
    The provider's enums are exactly the spec's.
    """
    from tether_sipher import BACKENDS, CHAINS, PRIVACY_LEVELS, RPC_PROVIDERS  # noqa: PLC0415

    props = SPEC["components"]["schemas"]["createSession_request_defaults"][
        "properties"
    ]

    assert tuple(props["chain"]["enum"]) == CHAINS
    assert tuple(props["privacyLevel"]["enum"]) == PRIVACY_LEVELS
    assert tuple(props["rpcProvider"]["enum"]) == RPC_PROVIDERS
    assert tuple(props["backend"]["enum"]) == BACKENDS
    assert props["defaultViewingKey"]["pattern"] == "^0x[0-9a-fA-F]+$"
    ttl = SPEC["components"]["schemas"]["createSession_request"]["properties"][
        "ttlSeconds"
    ]
    assert (ttl["minimum"], ttl["maximum"]) == (60, 86400)


async def test_provider_request_bodies_match_spec(provider: SipherProvider) -> None:
    """
    The bodies the provider builds for create and update validate against the
    spec's request schemas.
    """
    params = provider.parse_create(
        {
            "chain": "osmosis",
            "privacy_level": "maximum",
            "rpc_provider": "triton",
            "backend": "sip-native",
            "default_viewing_key": "0xabc",
        }
    )
    create = {"defaults": provider._wire_defaults(params, "create"), "ttlSeconds": 600}
    update = {"defaults": provider._wire_defaults({"chain": "sei"}, "update")}

    _validator("#/components/schemas/createSession_request").validate(create)
    _validator("#/components/schemas/updateSession_request").validate(update)


def test_validator_rejects_wrong_bodies() -> None:
    """
    The validation above has teeth: a wrong envelope or a bad id fails.
    """
    from jsonschema.exceptions import ValidationError  # noqa: PLC0415

    with pytest.raises(ValidationError):
        _validator("#/components/schemas/ErrorResponse").validate({"success": False})
    with pytest.raises(ValidationError):
        _validator("#/components/schemas/createSession_201_response").validate(
            {"success": True, "data": {"sessionId": "sess_nothex", "createdAt": 1}}
        )
    with pytest.raises(ValidationError):
        _validator("#/components/schemas/createSession_201_response").validate(
            {"success": True, "data": {"createdAt": "2026-01-01T00:00:00Z"}}
        )
