"""
Relay sessions through their handle: ``manager.session(RelayProvider)``.
"""

from __future__ import annotations

import pytest

import tether
from tether.testing import ASGIServer, ManualClock
from tether_relay import RelayHandle, RelayProvider
from tether_relay.emulator import RelayEmulator

from .test_manager import FAST, TOKEN, _manager, _registry  # noqa: F401


async def test_a_handle_authorizes_and_revokes_players(
    manager: tether.SessionManager, emulator: RelayEmulator
) -> None:
    """
    ``authorize_user`` and ``revoke_user`` on the handle change who may use
    the relay; after the block the handle refuses before anything is sent.
    """
    async with manager.session(RelayProvider, users=["1.1.1.1"]) as relay:
        assert isinstance(relay, RelayHandle)
        player = await relay.authorize_user("8.8.8.8")
        assert "8.8.8.8" == player.ip
        assert await relay.revoke_user("8.8.8.8")
        assert not await relay.revoke_user("8.8.8.8")
        assert relay.remote_id in emulator.live_sessions()

    with pytest.raises(tether.SessionEndedError):
        await relay.authorize_user("9.9.9.9")
    assert relay.remote_id not in emulator.live_sessions()


async def test_search_asks_the_service_for_a_players_sessions(
    manager: tether.SessionManager, server: ASGIServer, clock: ManualClock
) -> None:
    """
    ``manager.search(RelayProvider, user_ip=...)`` lists the service's
    sessions (not tether's records) and keeps those the player is authorized
    on, one this manager does not track included; bad filters are refused
    before anything is sent.
    """
    a = await manager.create("relay", users=["1.1.1.1", "8.8.8.8"])
    await manager.create("relay", users=["9.9.9.9"])
    async with tether.SessionManager(
        registry=_registry(),
        config={"relay": {"base_url": server.url, "api_token": TOKEN, **FAST}},
        clock=clock,
        health_checks=False,
        on_exit="keep",
        environ={},
    ) as other:  # its own store: the first manager has no record of this one
        foreign = await other.create("relay", users=["8.8.8.8"])

    sent = len(server.requests)
    with pytest.raises(tether.InvalidParameterError):
        await manager.search(RelayProvider, user_ip="not an ip")
    with pytest.raises(tether.InvalidParameterError):
        await manager.search("relay", colour="red")
    assert sent == len(server.requests)  # refused before any request

    found = await manager.search(RelayProvider, user_ip="8.8.8.8")
    assert {a.remote_id, foreign.remote_id} == {r.id for r in found}
    assert len(server.requests) > sent  # the service was asked
    assert [] == await manager.search(RelayProvider, user_ip="4.4.4.4")


async def test_update_through_a_handle_authorizes_and_revokes(
    manager: tether.SessionManager, emulator: RelayEmulator
) -> None:
    """
    ``manager.update(handle, authorize=..., revoke=...)`` changes who may use
    the relay on the service, and the handle sees the updated record.
    """
    async with manager.session(RelayProvider, users=["1.1.1.1", "8.8.8.8"]) as relay:
        remote = str(relay.remote_id)
        updated = await manager.update(relay, authorize=["9.9.9.9"], revoke=["8.8.8.8"])
        users = list(relay.session.data["users"])
        held = {
            ip: emulator.user_token(remote, ip) is not None
            for ip in ("1.1.1.1", "8.8.8.8", "9.9.9.9")
        }

    assert ["1.1.1.1", "9.9.9.9"] == users == list(updated.data["users"])
    assert {"1.1.1.1": True, "8.8.8.8": False, "9.9.9.9": True} == held


async def test_credentials_through_a_handle_are_the_services_tokens(
    manager: tether.SessionManager, emulator: RelayEmulator, server: ASGIServer
) -> None:
    """
    ``credentials()`` fetches the session's tokens now: each user's is the
    one the service holds, and none is kept in the record; after the block
    it refuses before anything is sent.
    """
    async with manager.session(RelayProvider, users=["1.1.1.1"]) as relay:
        await relay.authorize_user("8.8.8.8")
        creds = await relay.credentials()
        remote = str(relay.remote_id)
        record = repr(relay.session.to_dict())
        held = {ip: emulator.user_token(remote, ip) for ip in ("1.1.1.1", "8.8.8.8")}

    assert remote == creds.session_id
    for ip, token in held.items():
        assert token is not None
        assert token == creds.token_for(ip)
        assert str(token) not in record
    sent = len(server.requests)
    with pytest.raises(tether.SessionEndedError):
        await relay.credentials()
    assert sent == len(server.requests)
