# Copyright 2026 The tether developers. MIT license.
"""
The relay handle from synchronous code: ``SyncSessionManager.session``.
"""

from __future__ import annotations

import contextlib

import pytest

import tether
from tether.testing import serve_asgi
from tether_relay import RelayProvider, SyncRelayHandle
from tether_relay.emulator import RelayEmulator

from .conftest import FAST, TOKEN


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_sync_handle_authorizes_and_is_refused_after_its_block(loop: str) -> None:
    """
    The with-block gets a SyncRelayHandle: ``authorize_user``,
    ``credentials`` and ``revoke_user`` block and change the service's
    users; afterwards it refuses, and the relay is deleted.
    """
    emulator = RelayEmulator(tokens=(TOKEN,), ready_delay=0.0)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("relay", RelayProvider)
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(tether.SyncSessionManager(backend=loop))  # type: ignore[arg-type]
        server = stack.enter_context(
            probe.portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        manager = stack.enter_context(
            tether.SyncSessionManager(
                portal=probe.portal,
                registry=registry,
                config={"relay": {"base_url": server.url, "api_token": TOKEN, **FAST}},
                health_checks=False,
                environ={},
            )
        )
        with manager.session(RelayProvider, users=["1.1.1.1"]) as relay:
            assert isinstance(relay, SyncRelayHandle)
            remote = str(relay.remote_id)
            player = relay.authorize_user("8.8.8.8")
            creds = relay.credentials()
            held = emulator.user_token(remote, "8.8.8.8")
            revoked = relay.revoke_user("8.8.8.8")
            gone = emulator.user_token(remote, "8.8.8.8")
        with pytest.raises(tether.SessionEndedError):
            relay.authorize_user("9.9.9.9")

    assert "8.8.8.8" == player.ip
    assert held is not None
    assert held == creds.token_for("8.8.8.8")
    assert (True, None) == (revoked, gone)
    assert remote not in emulator.live_sessions()
