"""
The API key and the viewing key never show in reprs, logs, errors, params or data.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import structlog

from tether import Session, SessionState
from tether.abc import CreateRequest
from tether.exceptions import InvalidParameterError, RequestRejectedError
from tether_sipher import SipherConfig, SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


VK = "0x" + "c0ffee" * 10
SHORT_VK = "0x1234abcd"


def _leaks(blob: str) -> list[str]:
    return [s for s in (PRO_KEY, VK, SHORT_VK, VK[2:], SHORT_VK[2:]) if s in blob]


async def _create(
    provider: SipherProvider, **params: Any
) -> tuple[dict[str, Any], Session]:
    parsed = provider.parse_create(params)
    remote = await provider.create(CreateRequest(tether_id="t-1", params=parsed))
    session = Session(
        id="t-1",
        provider="sipher",
        state=SessionState.ACTIVE,
        remote_id=remote.id,
        expires_at=remote.expires_at,
        params=parsed,
        data=remote.data,
    )
    return parsed, session


async def test_viewing_key_reaches_service_but_not_session(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    The viewing key is sent to Sipher but params and data hold only an opaque
    reference and a flag; nothing in the session value reveals it.
    """
    with structlog.testing.capture_logs() as logs:
        parsed, session = await _create(
            provider, chain="solana", default_viewing_key=VK
        )
        await provider.ping(session)
        remote = await provider.get(session)

    assert emulator.session_defaults(session.remote_id or "") == {
        "chain": "solana",
        "defaultViewingKey": VK,
    }
    assert session.data["viewingKeySet"] is True
    assert "defaultViewingKey" not in session.data["defaults"]
    assert remote is not None
    assert "defaultViewingKey" not in remote.data["defaults"]
    blob = json.dumps(session.to_dict()) + repr(session) + repr(parsed) + repr(logs)
    blob += json.dumps(dict(remote.data))
    assert _leaks(blob) == []


async def test_viewing_key_in_update(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    A viewing key given in an update is sent, not returned.
    """
    _, session = await _create(provider)

    remote = await provider.update(
        session, provider.parse_update({"defaultViewingKey": SHORT_VK})
    )

    assert emulator.session_defaults(session.remote_id or "") == {
        "defaultViewingKey": SHORT_VK
    }
    assert _leaks(json.dumps(dict(remote.data))) == []


async def test_viewing_key_from_config(
    make_provider: Any, emulator: SipherEmulator
) -> None:
    """
    A default_viewing_key in config goes into every create without a viewing
    key of its own; the config's repr never shows it.
    """
    provider = await make_provider(default_viewing_key=VK)
    _, session = await _create(provider, chain="base")

    assert emulator.session_defaults(session.remote_id or "") == {
        "chain": "base",
        "defaultViewingKey": VK,
    }
    assert _leaks(repr(provider.config) + str(provider.config) + repr(provider)) == []


async def test_reference_from_another_process_is_refused(
    provider: SipherProvider, make_provider: Any, server: Any
) -> None:
    """
    Params stored by one provider instance cannot resurrect the viewing key in
    another: parsing (and create) refuse locally, naming the field, and send
    nothing.
    """
    parsed = provider.parse_create({"default_viewing_key": VK})
    other = await make_provider()
    before = server.request_count

    with pytest.raises(InvalidParameterError) as at_parse:
        other.parse_create(parsed)
    with pytest.raises(InvalidParameterError) as at_create:
        await other.create(CreateRequest(tether_id="t", params=parsed))

    assert at_parse.value.field == "default_viewing_key"
    assert at_create.value.field == "default_viewing_key"
    assert server.request_count == before


async def test_bad_viewing_key_error_hides_value() -> None:
    """
    A malformed viewing key is rejected without echoing it.
    """
    bad = "0xZZ" + "secretish"
    async with httpx.AsyncClient() as client:
        provider = SipherProvider(SipherConfig(api_key=PRO_KEY), client=client)
        with pytest.raises(InvalidParameterError) as info:
            provider.parse_create({"default_viewing_key": bad})

    assert info.value.value is None
    assert "secretish" not in str(info.value) + repr(info.value.args)


async def test_errors_never_carry_secrets(
    provider: SipherProvider, emulator: SipherEmulator
) -> None:
    """
    An error message echoing the API key or a viewing key this provider holds
    is masked, in the message and in the body.
    """
    emulator.inject_error(400, "VALIDATION_ERROR", f"bad key {VK} from {PRO_KEY}")

    with pytest.raises(RequestRejectedError) as info:
        await _create(provider, default_viewing_key=VK)

    blob = str(info.value) + repr(info.value.body) + repr(info.value.args)
    assert "VALIDATION_ERROR" in blob
    assert _leaks(blob) == []


async def test_reprs_hide_the_api_key(provider: SipherProvider) -> None:
    """
    Config, provider and auth reprs never show the API key.
    """
    _, session = await _create(provider)
    auth = provider.session_auth(session)

    assert _leaks(repr(provider.config) + repr(provider) + repr(auth)) == []
