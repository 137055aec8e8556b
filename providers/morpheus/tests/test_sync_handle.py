"""
The Morpheus handle from synchronous code: ``SyncSessionManager.session``.
"""

from __future__ import annotations

import contextlib

import pytest

import tether
from tether.testing import serve_asgi
from tether_morpheus import MorpheusProvider, SyncMorpheusHandle
from tether_morpheus.emulator import MorpheusEmulator

from .conftest import KEY
from .test_handle import TOOLS


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_sync_handle_chats_and_is_refused_after_its_block(loop: str) -> None:
    """
    The with-block gets a SyncMorpheusHandle whose blocking ``chat`` answers
    JSON, with tools too; afterwards it refuses, and the gateway session is
    closed.
    """
    emulator = MorpheusEmulator(api_keys=(KEY,))
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("morpheus", MorpheusProvider)
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(tether.SyncSessionManager(backend=loop))  # type: ignore[arg-type]
        server = stack.enter_context(
            probe.portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        manager = stack.enter_context(
            tether.SyncSessionManager(
                portal=probe.portal,
                registry=registry,
                config={"morpheus": {"base_url": server.url, "api_key": KEY}},
                health_checks=False,
                environ={},
            )
        )
        with manager.session(MorpheusProvider, model="llama-3.3-70b") as m:
            assert isinstance(m, SyncMorpheusHandle)
            reply = m.chat([{"role": "user", "content": "sync"}])
            tool = m.chat([{"role": "user", "content": "weather"}], tools=TOOLS)
            assert tether.SessionState.ACTIVE == m.state
        sent = len(server.requests)
        with pytest.raises(tether.SessionEndedError):
            m.chat([{"role": "user", "content": "too late"}])
        assert sent == len(server.requests)

    assert "echo: sync" == reply.content
    assert "get_weather" == tool.tool_calls[0].name
    assert tether.SessionState.CLOSED == m.state
