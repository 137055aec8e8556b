"""
Emulator behaviours the provider relies on, read through the wire: the
one-session-per-key rules, model switches, chat's automatic sessions, JWT
lifetimes, fault injection, and the provider's own use of ``request()``.
"""

from __future__ import annotations

import pytest

from tether.exceptions import AuthError, ProviderUnavailableError, RequestRejectedError
from tether.testing import Fault
from tether_morpheus import MorpheusClient, PingStatus
from tether_morpheus.emulator import model_id_for

from .conftest import KEY


LLAMA = model_id_for("llama-3.3-70b")
MISTRAL = model_id_for("mistral-31-24b")


async def test_model_switch_closes_early_and_locks_stake(emulator, client):
    """
    A modelsession for another model closes the key's session on chain early,
    which parks stake (``locked_stakes``).
    """
    first = await client.model_session(LLAMA, session_duration=600)
    second = await client.model_session(MISTRAL, session_duration=600)

    assert second.session_id != first.session_id
    assert first.session_id not in emulator.onchain_open_sessions()
    assert [s for s, _ in emulator.locked_stakes] == [first.session_id]


async def test_unknown_model_silently_falls_back(emulator, client):
    """
    The raw gateway opens a session on its default model for an unknown name and
    echoes the bogus name (the provider never lets this happen).
    """
    opened = await client.model_session("llama-nope")

    assert opened.model == "llama-nope"
    node = emulator._node[opened.session_id]
    assert node.model_id == MISTRAL


async def test_chat_auto_session_switches_models(emulator, client):
    """
    Chat without session_id reuses the key's session for the same model and
    replaces it (closing early) for another.
    """
    await client.chat_completions(
        [{"role": "user", "content": "a"}], model="llama-3.3-70b"
    )
    first = emulator.active_session_for(KEY)
    await client.chat_completions(
        [{"role": "user", "content": "b"}], model="llama-3.3-70b"
    )
    same = emulator.active_session_for(KEY)
    await client.chat_completions(
        [{"role": "user", "content": "c"}], model="mistral-31-24b"
    )
    other = emulator.active_session_for(KEY)

    assert first == same
    assert other != first
    assert [s for s, _ in emulator.locked_stakes] == [first]


async def test_access_token_expires_after_30_minutes(emulator, client, clock):
    """
    Access JWTs last 30 minutes on the emulator's clock.
    """
    token = emulator.issue_token()

    await client.automation_settings(access_token=token)
    await clock.advance(30 * 60 + 1)

    with pytest.raises(AuthError):
        await client.automation_settings(access_token=token)


async def test_live_sessions_follow_the_gateway(emulator, client, clock):
    """
    live_sessions() lists the key's session while it is active and served.
    """
    opened = await client.model_session(LLAMA, session_duration=60)
    live = emulator.live_sessions()
    await clock.advance(61)

    assert live == [opened.session_id]
    assert emulator.live_sessions() == []


async def test_faults_leave_state_untouched(emulator, client):
    """
    An injected 503 answers before the gateway acts: no session is opened.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.SERVER_ERROR]

    with pytest.raises(ProviderUnavailableError):
        await client.model_session(LLAMA)

    emulator.faults.rate = 0.0
    assert (await client.ping_session()).status is PingStatus.NO_SESSION
    assert emulator.faults.injected[Fault.SERVER_ERROR] == 1


async def test_provider_request_reads_the_envelope(provider):
    """
    The base ``Provider.request`` helper maps through the gateway's envelopes.
    """
    with pytest.raises(RequestRejectedError) as info:
        await provider.request(
            "GET", "/api/v1/models/ratedbids", operation="rated_bids"
        )

    assert info.value.code == "validation_error"
    assert "model_id" in str(info.value)


async def test_drop_after_create_is_outcome_unknown(emulator, http):
    """
    A connection dropped after the gateway opened a session is OutcomeUnknownError:
    the session exists although the client never heard so.
    """
    from tether.exceptions import OutcomeUnknownError  # noqa: PLC0415

    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.DROP_AFTER]

    with pytest.raises(OutcomeUnknownError):
        await MorpheusClient(http).model_session(LLAMA)

    assert emulator.active_session_for(KEY) is not None
