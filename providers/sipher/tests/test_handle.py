"""
Sipher sessions through their handle: ``manager.session(SipherProvider)``.
"""

from __future__ import annotations

import anyio
import pytest

import tether
from tether.testing import ASGIServer
from tether_sipher import SipherHandle, SipherProvider

from .test_manager import COMPARE, _manager_fixture  # noqa: F401 -- the manager fixture


def _session_ids(server: ASGIServer, since: int) -> list[str | None]:
    # The X-Session-Id of each compare request the emulator received.
    return [
        r.headers.get("x-session-id")
        for r in server.requests[since:]
        if r.path == "/v1/backends/compare"
    ]


async def test_a_handle_sends_requests_bound_to_the_session(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    ``request`` and ``client()`` carry the session: each request reaches the
    emulator with the session's ``X-Session-Id``, and its defaults apply;
    after the block both refuse before anything is sent.
    """
    async with manager.session(SipherProvider, chain="cosmos") as sip:
        assert isinstance(sip, SipherHandle)
        since = len(server.requests)
        response = await sip.request("POST", "/v1/backends/compare", json=COMPARE)
        async with sip.client() as client:
            again = await client.post("/v1/backends/compare", json=COMPARE)
        remote = sip.remote_id

    assert "cosmos" == response.json()["data"]["chain"]
    assert "cosmos" == again.json()["data"]["chain"]
    assert [remote, remote] == _session_ids(server, since)
    sent = len(server.requests)
    with pytest.raises(tether.SessionEndedError):
        await sip.request("POST", "/v1/backends/compare", json=COMPARE)
    with pytest.raises(tether.SessionEndedError):
        async with sip.client():
            pass
    assert sent == len(server.requests)


async def test_the_bound_client_is_raw_but_refuses_once_the_session_ended(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    As documented on ``client()``: its requests get no ``operation`` event
    (``request`` gets one) and an error status comes back as a response;
    a session closed while its block is open is refused at the next request,
    before anything is sent.
    """
    async with manager.events() as events:
        async with (
            manager.session(SipherProvider, chain="cosmos") as sip,
            sip.client() as client,
        ):
            await sip.request("POST", "/v1/backends/compare", json=COMPARE)
            missing = await client.get("/v1/no/such/route")
            await client.post("/v1/backends/compare", json=COMPARE)
            await manager.close(sip)
            sent = len(server.requests)
            with pytest.raises(tether.SessionEndedError):
                await client.post("/v1/backends/compare", json=COMPARE)
            assert sent == len(server.requests)
        operations = []
        while True:
            try:
                event = events.receive_nowait()
            except anyio.WouldBlock:
                break
            if event.kind is tether.EventKind.OPERATION:
                operations.append(event.data["operation"])

    assert 404 == missing.status_code
    assert ["request"] == operations


async def test_update_through_a_handle_changes_the_defaults_requests_get(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    ``manager.update(handle, chain=...)`` merges into the session's defaults
    on the service: the handle's record shows them, and the next request
    through the handle runs with them.
    """
    async with manager.session(SipherProvider, chain="cosmos") as sip:
        updated = await manager.update(sip, chain="near")
        defaults = dict(sip.session.data["defaults"])
        response = await sip.request("POST", "/v1/backends/compare", json=COMPARE)

    assert {"chain": "near"} == defaults == dict(updated.data["defaults"])
    assert "near" == response.json()["data"]["chain"]
