"""
SSE framing the emulator does not produce: comments, the node's failover control
lines, multi-line data, and truncated streams (unit tests over MockTransport).
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.exceptions import ProviderError, ProviderUnavailableError
from tether_morpheus import MorpheusClient, join_content
from tether_morpheus._errors import classify


def _chunk(text: str) -> str:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _client(body: str) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=body.encode()
        )

    return httpx.AsyncClient(
        base_url="http://gateway", transport=httpx.MockTransport(handler)
    )


async def _collect(body: str):
    async with _client(body) as http:
        stream = await MorpheusClient(http).stream_chat_completions(
            [{"role": "user", "content": "x"}], session_id="0x1"
        )
        async with stream:
            return stream, [c async for c in stream]


async def test_comments_and_failover_control_lines():
    """
    Comments are skipped; ``new session opened: 0x...`` is recorded, not yielded.
    """
    body = (
        ": keep-alive\n\n"
        + _chunk("a")
        + "data: provider failed, failover enabled\n\n"
        + "data: new session opened: 0xabc\n\n"
        + _chunk("b")
        + "data: [DONE]\n\n"
    )

    stream, chunks = await _collect(body)

    assert join_content(chunks) == "ab"
    assert stream.new_session_id == "0xabc"
    assert stream.done


async def test_truncated_stream_raises():
    """
    A stream that ends without [DONE] (a provider dying mid-answer) is an error.
    """
    with pytest.raises(ProviderUnavailableError) as info:
        await _collect(_chunk("a"))

    assert info.value.code == "stream_truncated"


async def test_crlf_and_unterminated_last_event():
    """
    CRLF line ends work, and a last event without its blank line still counts.
    """
    body = _chunk("x").replace("\n", "\r\n") + "data: [DONE]"

    stream, chunks = await _collect(body)

    assert join_content(chunks) == "x"
    assert stream.done


async def test_error_status_before_streaming():
    """
    A non-200 status raises before any iteration, with the gateway's envelope.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "Invalid API key"})

    async with httpx.AsyncClient(
        base_url="http://gateway", transport=httpx.MockTransport(handler)
    ) as http:
        with pytest.raises(ProviderError) as info:
            await MorpheusClient(http).stream_chat_completions(
                [{"role": "user", "content": "x"}]
            )

    assert info.value.status_code == 401


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    status=st.integers(min_value=100, max_value=599),
    body=json_values
    | st.fixed_dictionaries({"detail": st.text(max_size=60)})
    | st.fixed_dictionaries(
        {
            "error": st.dictionaries(
                st.sampled_from(["message", "type", "status"]), json_values
            )
        }
    ),
)
def test_classify_always_returns_a_provider_error(status, body):
    """
    Whatever the gateway sends, classification yields a ProviderError keeping
    the status, and never raises itself.
    """
    error = classify(status, body, provider="morpheus", operation="op")

    assert isinstance(error, ProviderError)
    assert error.status_code == status
