"""
httpx over aiohttp, with failures classified as httpx's own transport does.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class SafeAiohttpTransport(AiohttpTransport):
    """
    ``httpx_aiohttp.AiohttpTransport`` that never calls a dropped connection a connect error.

    httpx-aiohttp maps every ``aiohttp.ClientConnectionError`` to
    ``httpx.ConnectTimeout``, including a server that disconnected after the
    request was sent. tether reads ``ConnectTimeout`` as "never sent" and may
    repeat a create: so a disconnect after sending becomes
    ``httpx.RemoteProtocolError`` (outcome unknown), as on httpx's own transport.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(
                cause, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
            ) and not isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.RemoteProtocolError(str(exc), request=request) from cause
            raise
