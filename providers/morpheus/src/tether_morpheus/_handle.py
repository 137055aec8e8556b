"""
The Morpheus session handle: chat completions as methods of the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from tether.abc import SessionHandle, SyncSessionHandle
from tether_morpheus._client import ChatStream
from tether_morpheus._models import ChatCompletion


if TYPE_CHECKING:
    from tether_morpheus._provider import MorpheusProvider  # noqa: F401


class MorpheusHandle(SessionHandle["MorpheusProvider"]):
    """
    A live Morpheus session (or lease)::

        async with manager.session(MorpheusProvider, model="llama-3.3-70b") as m:
            reply = await m.chat([{"role": "user", "content": "hi"}])
            async with await m.chat(messages, stream=True) as chunks:
                async for chunk in chunks:
                    ...

    ``chat`` is :meth:`MorpheusProvider.chat <tether_morpheus.MorpheusProvider.chat>`
    on this session, under the manager's guarantees: refused once the session
    ended, retried only when the request was not carried out (an inference is
    not repeated), traced.
    """

    __slots__ = ()

    @overload
    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatCompletion: ...

    @overload
    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatStream: ...

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatCompletion | ChatStream:
        """
        A chat completion on this session; ``stream=True`` for a
        :class:`~tether_morpheus.ChatStream` of chunks.
        """
        if stream:
            return await self.run(
                "chat",
                lambda s: self.provider.chat(
                    s,
                    messages,
                    stream=True,
                    tools=tools,
                    tool_choice=tool_choice,
                    **options,
                ),
            )
        return await self.run(
            "chat",
            lambda s: self.provider.chat(
                s, messages, tools=tools, tool_choice=tool_choice, **options
            ),
        )


class SyncMorpheusHandle(SyncSessionHandle[MorpheusHandle]):
    """
    :class:`MorpheusHandle` for synchronous code (JSON replies; stream from
    async code through :attr:`handle`).
    """

    __slots__ = ()

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatCompletion:
        """
        See :meth:`MorpheusHandle.chat`.
        """
        return self.call(
            self.handle.chat, messages, tools=tools, tool_choice=tool_choice, **options
        )
