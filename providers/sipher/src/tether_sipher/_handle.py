"""
The Sipher session handle: requests that carry the session's ``X-Session-Id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from tether.abc import SessionHandle, SyncSessionHandle


if TYPE_CHECKING:
    from tether_sipher._provider import SipherProvider  # noqa: F401


class SipherHandle(SessionHandle["SipherProvider"]):
    """
    A live Sipher session: its defaults apply to every request it sends::

        async with manager.session(SipherProvider, privacy_level="maximum") as sip:
            response = await sip.request("POST", "/v1/privacy/score", json={...})
            async with sip.client() as client:      # an httpx client bound to it
                await client.get("/v1/...")

    ``request`` runs under the manager's guarantees (refused once the session
    ended, retried where safe: a GET, never a POST, traced).
    """

    __slots__ = ()

    async def request(
        self, method: str, url: str, *, ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """
        One request bound to the session (``X-Session-Id``).
        """
        operation = "get" if method.upper() in ("GET", "HEAD") else "request"
        return await self.run(
            operation,
            lambda s: self.provider.session_request(s, method, url, ok=ok, **kwargs),
        )

    @contextlib.asynccontextmanager
    async def client(self, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
        """
        An httpx client bound to the session, which refuses once it ended.
        """
        current = self.session
        current.ensure_usable()
        async with self.provider.bound_client(current, **kwargs) as bound:
            yield bound


class SyncSipherHandle(SyncSessionHandle[SipherHandle]):
    """
    :class:`SipherHandle` for synchronous code.
    """

    __slots__ = ()

    def request(
        self, method: str, url: str, *, ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        return self.call(self.handle.request, method, url, ok=ok, **kwargs)
