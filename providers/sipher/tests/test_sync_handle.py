"""
The Sipher handle from synchronous code: ``SyncSessionManager.session``.
"""

from __future__ import annotations

import contextlib

import httpx
import pytest

import tether
from tether.testing import serve_asgi
from tether_sipher import SipherProvider, SyncSipherHandle
from tether_sipher.emulator import PRO_KEY, SipherEmulator

from .test_manager import COMPARE


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_sync_handle_sends_bound_requests_and_is_refused_after_its_block(
    loop: str,
) -> None:
    """
    The with-block gets a SyncSipherHandle: ``request`` and the blocking
    ``client()`` (an httpx.Client) reach the emulator with the session's
    ``X-Session-Id`` and its defaults apply; once the session is closed,
    the client refuses at its next request and ``request`` refuses, both
    before anything is sent.
    """
    emulator = SipherEmulator()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sipher", SipherProvider)
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(tether.SyncSessionManager(backend=loop))  # type: ignore[arg-type]
        server = stack.enter_context(
            probe.portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        manager = stack.enter_context(
            tether.SyncSessionManager(
                portal=probe.portal,
                registry=registry,
                config={"sipher": {"base_url": server.url, "api_key": PRO_KEY}},
                health_checks=False,
                environ={},
            )
        )
        with manager.session(SipherProvider, chain="cosmos") as sip:
            assert isinstance(sip, SyncSipherHandle)
            remote = sip.remote_id
            since = len(server.requests)
            response = sip.request("POST", "/v1/backends/compare", json=COMPARE)
            with sip.client() as client:
                assert isinstance(client, httpx.Client)
                again = client.post("/v1/backends/compare", json=COMPARE)
                ids = [
                    r.headers.get("x-session-id")
                    for r in server.requests[since:]
                    if r.path == "/v1/backends/compare"
                ]
                manager.close(sip)
                sent = len(server.requests)
                with pytest.raises(tether.SessionEndedError):
                    client.post("/v1/backends/compare", json=COMPARE)
        with pytest.raises(tether.SessionEndedError):
            sip.request("POST", "/v1/backends/compare", json=COMPARE)
        with pytest.raises(tether.SessionEndedError), sip.client():
            pass
        assert sent == len(server.requests)

    assert [remote, remote] == ids
    assert "cosmos" == response.json()["data"]["chain"]
    assert "cosmos" == again.json()["data"]["chain"]
