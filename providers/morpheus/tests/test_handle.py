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
from tether_morpheus.emulator import MorpheusEmulator

from .test_manager import _manager_fixture  # noqa: F401 -- the manager fixture


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
]


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


async def test_a_handle_chats_with_tools_json_and_streaming(
    manager: tether.SessionManager, emulator: MorpheusEmulator
) -> None:
    """
    ``tools=`` and ``tool_choice=`` go to the gateway as sent; the answer is
    a tool call, in JSON and in the stream; with ``tool_choice="none"`` the
    model answers in text.
    """
    messages = [{"role": "user", "content": "weather in Oslo"}]
    async with manager.session(MorpheusProvider, model="llama-3.3-70b") as m:
        reply = await m.chat(messages, tools=TOOLS, tool_choice="auto")
        stream = await m.chat(messages, stream=True, tools=TOOLS)
        async with stream:
            chunks = [c async for c in stream]
        plain = await m.chat(messages, tools=TOOLS, tool_choice="none")

    sent = [
        body
        for method, path, _, body in emulator.requests_log
        if (method, path) == ("POST", "/api/v1/chat/completions")
    ]
    assert [TOOLS] * 3 == [body["tools"] for body in sent]
    assert ["auto", None, "none"] == [body.get("tool_choice") for body in sent]
    assert ("get_weather", "tool_calls") == (
        reply.tool_calls[0].name,
        reply.choices[0].finish_reason,
    )
    streamed = [t for c in chunks for ch in c.choices for t in ch.message.tool_calls]
    assert "get_weather" == streamed[0].name
    assert "tool_calls" == chunks[-1].finish_reason
    assert () == plain.tool_calls
    assert "echo: weather in Oslo" == plain.content


async def test_update_through_a_handle_is_refused_before_anything_is_sent(
    manager: tether.SessionManager, emulator: MorpheusEmulator
) -> None:
    """
    A Morpheus session cannot be changed in place: ``manager.update`` on a
    handle raises NotSupportedError without a request; the session still
    chats.
    """
    async with manager.session(MorpheusProvider, model="llama-3.3-70b") as m:
        sent = len(emulator.requests_log)
        with pytest.raises(tether.NotSupportedError):
            await manager.update(m, model="qwen")
        assert sent == len(emulator.requests_log)
        reply = await m.chat([{"role": "user", "content": "still"}])

    assert "echo: still" == reply.content
