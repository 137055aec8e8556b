"""
Morpheus sessions through their handle: ``manager.session(MorpheusProvider)``.
"""

from __future__ import annotations

import pytest

import tether
from tether_morpheus import (
    ChatCompletion,
    MorpheusHandle,
    MorpheusProvider,
    join_content,
)

from .test_manager import _manager_fixture  # noqa: F401 -- the manager fixture


async def test_a_handle_chats_json_and_streams(manager: tether.SessionManager) -> None:
    """
    ``chat`` on the handle answers JSON, or a stream of chunks; after the
    block the handle refuses before anything is sent.
    """
    async with manager.session(MorpheusProvider, model="llama-3.3-70b") as m:
        assert isinstance(m, MorpheusHandle)
        reply = await m.chat([{"role": "user", "content": "json"}])
        stream = await m.chat([{"role": "user", "content": "stream me"}], stream=True)
        async with stream:
            chunks = [c async for c in stream]

    assert isinstance(reply, ChatCompletion)
    assert "echo: json" == reply.content
    assert "echo: stream me" == join_content(chunks)
    with pytest.raises(tether.SessionEndedError):
        await m.chat([{"role": "user", "content": "too late"}])
    assert tether.SessionState.CLOSED == m.state
