"""
Sipher sessions through their handle: ``manager.session(SipherProvider)``.
"""

from __future__ import annotations

import pytest

import tether
from tether_sipher import SipherHandle, SipherProvider

from .test_manager import COMPARE, _manager_fixture  # noqa: F401 -- the manager fixture


async def test_a_handle_sends_requests_bound_to_the_session(
    manager: tether.SessionManager,
) -> None:
    """
    ``request`` and ``client()`` carry the session: its defaults apply; after
    the block both refuse.
    """
    async with manager.session(SipherProvider, chain="cosmos") as sip:
        assert isinstance(sip, SipherHandle)
        response = await sip.request("POST", "/v1/backends/compare", json=COMPARE)
        async with sip.client() as client:
            again = await client.post("/v1/backends/compare", json=COMPARE)

    assert "cosmos" == response.json()["data"]["chain"]
    assert "cosmos" == again.json()["data"]["chain"]
    with pytest.raises(tether.SessionEndedError):
        await sip.request("POST", "/v1/backends/compare", json=COMPARE)
    with pytest.raises(tether.SessionEndedError):
        async with sip.client():
            pass
