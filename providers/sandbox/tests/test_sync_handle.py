"""
The sandbox handle from synchronous code: ``SyncSessionManager.session``.
"""

from __future__ import annotations

import contextlib

import pytest

import tether
from tether.testing import serve_asgi
from tether_sandbox import SandboxProvider, SyncSandboxHandle
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_sync_handle_executes_and_is_refused_after_its_block(loop: str) -> None:
    """
    The with-block gets a SyncSandboxHandle whose blocking ``execute``
    returns the output; afterwards it refuses, and the VM is gone.
    """
    emulator = SandboxEmulator(api_keys=(KEY,))
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(tether.SyncSessionManager(backend=loop))  # type: ignore[arg-type]
        server = stack.enter_context(
            probe.portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        manager = stack.enter_context(
            tether.SyncSessionManager(
                portal=probe.portal,
                registry=registry,
                config={"sandbox": {"base_url": server.url, "api_key": KEY}},
                health_checks=False,
                environ={},
            )
        )
        with manager.session(SandboxProvider) as sb:
            assert isinstance(sb, SyncSandboxHandle)
            out = sb.execute("print('sync')")
            assert tether.SessionState.ACTIVE == sb.state
            remote = sb.remote_id
            assert remote in emulator.live_sessions()
            assert manager.ping(sb).ok
        with pytest.raises(tether.SessionEndedError):
            sb.execute("print(1)")

    assert "sync" in out.stdout
    assert remote not in emulator.live_sessions()
