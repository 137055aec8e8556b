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
    options: ClientOptions,
    *,
    transport: TransportName | None = None,
    limits: httpx.Limits | None = None,
    proxy: httpx.Proxy | str | None = None,
    trust_env: bool = True,
) -> tuple[httpx.AsyncClient, TransportName]:
    """
    Build a provider's client on *transport* (default: :func:`pick_transport`).

    The same options mean the same on both transports: the base URL, headers
    and timeout of *options*; *limits* (default httpx's); *proxy*, else with
    *trust_env* the ``HTTP(S)_PROXY`` / ``NO_PROXY`` environment variables.
    Options that *options* itself carries (``limits``, ``proxy``) are used
    when not given here.
    """
    chosen = transport or pick_transport()
    limits = (
        limits
        or getattr(options, "limits", None)
        or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    )
    proxy = proxy or getattr(options, "proxy", None)
    cls: type[httpx.AsyncClient] = httpx.AsyncClient
    if chosen == "aiohttp":
        from tether._aiohttp import AiohttpClient  # noqa: PLC0415

        cls = AiohttpClient
    # A password in the URL would show in every request line httpx logs:
    # it goes into the client's auth instead.
    base_url = httpx.URL(options.base_url)
    auth: httpx.BasicAuth | None = None
    if base_url.userinfo:
        auth = httpx.BasicAuth(base_url.username, base_url.password)
        base_url = base_url.copy_with(username=None, password=None)
    client = cls(
        base_url=base_url,
        auth=auth,
        headers=dict(options.headers),
        timeout=options.timeout,
        limits=limits,
        proxy=proxy,
        trust_env=trust_env,
    )
    return client, chosen
