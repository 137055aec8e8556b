"""
The emulator's answers and the client's requests against the OpenAPI document
that gateway v1.14.0 served (copied into ``tests/spec/``).

Where spec and reference disagree: the spec declares only 200/201/204 and 422
responses, while the gateway also answers 400/401/403/404/500 with
``{"detail": ...}`` or ``{"error": {...}}`` (reference §2-3); and v1.14.0 had no
``/auth/register`` (POST), ``/auth/login`` or ``/auth/refresh`` (Cognito), which
the seed-era gateway documented and the emulator still serves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tether import Secret
from tether.exceptions import ProviderError
from tether_morpheus import MorpheusClient, MorpheusConfig, MorpheusProvider
from tether_morpheus.emulator import model_id_for

from .conftest import KEY


SPEC = json.loads(
    (
        Path(__file__).parent / "spec" / "morpheus-gateway-v1.14.0-openapi.json"
    ).read_text()
)
SEED_ONLY = {
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
}
# Emulator routes that are not API operations of the document.
NOT_IN_SPEC = {"/openapi.json", "/api/v1/openapi.json"}


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    for template, ops in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method in ops:
            return template, ops[method]
    return None


def _validate(schema: dict[str, Any], instance: Any) -> None:
    jsonschema.Draft202012Validator(
        {**schema, "components": SPEC["components"]}
    ).validate(instance)


@pytest.fixture(name="exchanges")
def _exchanges() -> list[tuple[str, str, int, Any]]:
    """
    Every (method, path, status, body) the spec client saw.
    """
    return []


async def _drive(client: MorpheusClient, emulator, clock) -> None:
    """
    One pass over every route, successes and failures.
    """
    llama = model_id_for("llama-3.3-70b")
    await client.root()
    await client.health()
    await client.models()
    await client.all_models()
    await client.rated_bids(llama)
    await client.approve(100)
    opened = await client.model_session(llama, session_duration=300)
    await client.ping_session()
    await client.chat_completions(
        [{"role": "user", "content": "hi"}],
        session_id=opened.session_id,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        temperature=0.5,
        stop=["\n"],
    )
    await client.close_session()
    bid = emulator.bids_for("llama-3.3-70b")[0]
    await client.bid_session(bid, session_duration=120)
    await client.close_session()
    client.access_token = Secret(emulator.issue_token())
    await client.automation_settings()
    await client.update_automation_settings(is_enabled=True, session_duration=600)
    key = await client.create_api_key(name="spec")
    keys = await client.api_keys()
    await client.delete_api_key(
        next(k.id for k in keys if k.key_prefix == key.key_prefix)
    )
    await client.store_private_key("0x" + "cd" * 32)
    await client.private_key_status()
    await client.delete_private_key()
    made = await client.store_delegation(
        delegate_address="0x" + "2" * 40, signed_delegation_data="sig"
    )
    await client.delegations()
    await client.active_delegation()
    await client.delete_delegation(made.id)
    await client.active_delegation()
    for call in (
        lambda: client._send("POST", "/api/v1/session/approve", operation="x"),
        lambda: client._send(
            "POST",
            "/api/v1/session/modelsession",
            params={"model_id": llama},
            operation="x",
        ),
        lambda: client._send(
            "POST", "/api/v1/chat/completions", json={"messages": [{}]}, operation="x"
        ),
        lambda: client._send("GET", "/api/v1/models/ratedbids", operation="x"),
        lambda: client._send(
            "DELETE",
            "/api/v1/auth/keys/abc",
            headers={"Authorization": f"Bearer {client.access_token.reveal()}"},
            operation="x",
        ),
    ):
        with pytest.raises(ProviderError):
            await call()
    await client.delete_account()


async def test_emulator_answers_match_the_spec(emulator, server, clock, exchanges):
    """
    Every documented (path, method, status) answer validates against its schema;
    undocumented ones are only the error statuses the spec leaves out.
    """

    async def record(response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return
        await response.aread()
        body = response.json() if response.content else None
        exchanges.append(
            (
                response.request.method.lower(),
                response.request.url.path,
                response.status_code,
                body,
            )
        )

    options = MorpheusProvider.client_options(
        MorpheusConfig(base_url=server.url, api_key=KEY)
    )
    async with httpx.AsyncClient(
        base_url=options.base_url,
        headers=dict(options.headers),
        event_hooks={"response": [record]},
    ) as http:
        await _drive(MorpheusClient(http), emulator, clock)

    validated, undocumented, statuses = 0, set(), set()
    for method, path, status, body in exchanges:
        if path in NOT_IN_SPEC:
            continue
        found = _operation(method, path)
        assert found is not None, f"{method.upper()} {path} is not in the spec"
        template, operation = found
        response = operation["responses"].get(str(status))
        if response is None:
            undocumented.add((template, status))
            assert status >= 400, (
                f"{method.upper()} {template} answered undocumented {status}"
            )
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            assert body is None, (
                f"{method.upper()} {template} {status} should have no body"
            )
        else:
            _validate(schema, body)
        validated += 1
        statuses.add(status)

    assert validated >= 25
    assert {200, 204, 422} <= statuses
    assert all(status in (400, 401, 403, 404, 500) for _, status in undocumented)


async def test_client_requests_match_the_spec(emulator, client):
    """
    Every JSON body and query the client sent validates against the spec's
    request schema and parameter list (seed-era auth routes excepted).
    """
    client_tokens = await client.register(
        email="spec@example.com", password="password123"
    )
    assert client_tokens.id > 0
    await client.login(email="spec@example.com", password="password123")
    await _drive(client, emulator, None)

    checked = 0
    for raw_method, path, query, body in emulator.requests_log:
        method = raw_method.lower()
        if path in NOT_IN_SPEC or (method, path) in SEED_ONLY:
            continue
        found = _operation(method, path)
        assert found is not None, f"{method.upper()} {path} is not in the spec"
        _, operation = found
        params = {
            p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"
        }
        for pair in filter(None, query.split("&")):
            name = pair.split("=", 1)[0]
            assert name in params, (
                f"{method.upper()} {path}: unknown query parameter {name}"
            )
        schema = (
            operation.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema")
        )
        if (
            schema is not None
            and isinstance(body, dict)
            and body.get("messages") != [{}]
        ):
            _validate(schema, body)
            checked += 1
    assert checked >= 7
