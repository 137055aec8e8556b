"""
Choosing the HTTP transport under each provider's httpx client.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import httpx
import sniffio

from tether.abc import ClientOptions


TransportName = Literal["httpx", "aiohttp"]


def pick_transport() -> TransportName:
    """
    The fastest transport that works on the running backend.

    aiohttp (through ``httpx-aiohttp``, the ``fast`` extra) runs only on asyncio;
    under trio, or without the extra, httpx's own transport is used.
    """
    try:
        backend = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "httpx"
    if backend == "asyncio" and importlib.util.find_spec("httpx_aiohttp") is not None:
        return "aiohttp"
    return "httpx"


def build_client(
    options: ClientOptions, *, transport: TransportName | None = None
) -> tuple[httpx.AsyncClient, TransportName]:
    """
    Build a provider's client on *transport* (default: :func:`pick_transport`).
    """
    chosen = transport or pick_transport()
    kwargs: dict[str, object] = {}
    if chosen == "aiohttp":
        from tether._aiohttp import SafeAiohttpTransport  # noqa: PLC0415

        kwargs["transport"] = SafeAiohttpTransport()
    client = httpx.AsyncClient(
        base_url=options.base_url,
        headers=dict(options.headers),
        timeout=options.timeout,
        **kwargs,  # type: ignore[arg-type]
    )
    return client, chosen
