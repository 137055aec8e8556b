"""
httpx over aiohttp, with failures classified as httpx's own transport does.

Only imported under asyncio with the ``fast`` extra installed (see
:mod:`tether._transport`).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


# Most specific first: the first match wins.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.RequestError]], ...] = (
    # Never sent: tether may safely repeat the request.
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    # Sent, answer missing or cut: the outcome is unknown.
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.RemoteProtocolError),
    (TimeoutError, httpx.ReadTimeout),
)


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """
    Turn aiohttp's errors into httpx's, by whether the request may have been sent.

    httpx-aiohttp maps every ``aiohttp.ClientConnectionError`` to
    ``httpx.ConnectTimeout``, including a server that disconnected after the
    request was sent. tether reads ``ConnectTimeout`` as "never sent" and may
    repeat a create: so only failures to connect become connect errors here;
    everything after is a read or protocol error (outcome unknown), as on
    httpx's own transport.
    """
    try:
        yield
    except httpx.HTTPError:
        raise
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise


class _Stream(httpx.AsyncByteStream):
    """
    The response body, read as it arrives, with errors mapped as above.
    """

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request
    ) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        with _mapped(self._request):
            self._response.release()


class SafeAiohttpTransport(AiohttpTransport):
    """
    ``httpx_aiohttp.AiohttpTransport`` that keeps httpx's meaning of its options and errors.

    * A dropped connection after the request was sent is
      ``httpx.RemoteProtocolError`` / ``ReadError``, never a connect error.
    * ``httpx.Limits``: ``max_connections`` caps the pool (``None``: no cap,
      where aiohttp would silently keep 100), ``keepalive_expiry`` is aiohttp's
      keep-alive timeout.
    * ``httpx.Timeout``: connect, read and pool timeouts per request.
      aiohttp has no write timeout; it is not applied.
    * Proxies: the ``proxy`` httpx gives each mount (an explicit one, or from
      ``HTTP(S)_PROXY`` / ``NO_PROXY`` when ``trust_env``, read once by httpx).

    Do not instantiate directly: use :func:`tether._transport.build_client`.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        proxy: httpx.Proxy | None = None,
        trust_env: bool = True,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            verify=verify,
            trust_env=trust_env,
            limits=limits or httpx.Limits(max_connections=100),
            proxy=proxy,
        )

    def get_client(self) -> aiohttp.ClientSession:
        limits = self.limits
        keepalive: dict[str, Any] = {}
        if limits.keepalive_expiry is not None:
            keepalive["keepalive_timeout"] = limits.keepalive_expiry
        connector = aiohttp.TCPConnector(
            # 0 is "no limit" to aiohttp.
            limit=limits.max_connections or 0,
            ssl=self.ssl_context,
            **keepalive,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # httpx has read the proxy environment variables already (each
            # proxy is a mount with its own transport); aiohttp's trust_env
            # would read them, and ~/.netrc, in a thread on every request.
            trust_env=False,
            # aiohttp's defaults (total=300 s) must not add a limit httpx lacks.
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        try:
            data: bytes | httpx.AsyncByteStream | None = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)  # aiohttp chunks it
        proxy = self.proxy
        with _mapped(request):
            response = await self.client.request(
                method=request.method,
                url=str(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
                proxy=str(proxy.url) if proxy else None,
                proxy_auth=aiohttp.BasicAuth(*proxy.auth)
                if proxy and proxy.auth
                else None,
                proxy_headers=proxy.headers if proxy else None,
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Stream(response, request),
            request=request,
            extensions=extensions,
        )


class AiohttpClient(httpx.AsyncClient):
    """
    An ``httpx.AsyncClient`` whose transports (proxy mounts included) are aiohttp.

    httpx itself decides limits, proxies (given or from the environment) and
    mounts; each transport it asks for is a :class:`SafeAiohttpTransport` with
    those options.
    """

    # httpx calls these two with positional arguments: keep its signature.
    def _init_transport(  # noqa: PLR0917
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100),  # noqa: B008
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return SafeAiohttpTransport(limits=limits, trust_env=trust_env, verify=verify)

    def _init_proxy_transport(  # noqa: PLR0917
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100),  # noqa: B008
        **kwargs: Any,
    ) -> httpx.AsyncBaseTransport:
        return SafeAiohttpTransport(
            limits=limits, proxy=proxy, trust_env=trust_env, verify=verify
        )
