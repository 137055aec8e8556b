"""
Relay sessions through their handle: ``manager.session(RelayProvider)``.
"""

from __future__ import annotations

import pytest

import tether
from tether_relay import RelayHandle, RelayProvider
from tether_relay.emulator import RelayEmulator

from .test_manager import _manager  # noqa: F401 -- the manager fixture


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
