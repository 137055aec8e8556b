"""
The Sipher session handle: requests that carry the session's ``X-Session-Id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from tether.abc import SessionHandle, SyncSessionHandle


if TYPE_CHECKING:
    from tether import Session
    from tether_sipher._provider import SipherProvider


def bind_request(
    provider: SipherProvider, session: Session, request: httpx.Request
) -> None:
    """
    Put the API key and the session's ``X-Session-Id`` on *request* (after
    :meth:`SipherProvider.ensure_live` passed).
    """
    for name, value in provider.client_options(provider.config).headers.items():
        if name.lower() == "accept" and "accept" in request.headers:
            continue
        request.headers[name] = value
    request.headers["X-Session-Id"] = str(session.remote_id)


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
    async def client(
        self, *, verify: str | None = None, **kwargs: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        """
        A raw :class:`httpx.AsyncClient` bound to the session, for Sipher's
        routes as you call them (:meth:`SipherProvider.bound_client
        <tether_sipher.SipherProvider.bound_client>` on this session).

        Each request it sends carries the API key and ``X-Session-Id``, and is
        sent only after the provider's liveness check passed (the session's
        state, what the provider learned earlier, its ``expiresAt``, and a
        ``GET`` of the session by the *verify* policy): once the session is
        known to have ended (closed, expired, lost), a request raises
        :class:`~tether.exceptions.SessionEndedError` and nothing is sent.
        Entering the block on an ended session raises it too.

        Its requests are outside the manager's operation guarantees: they are
        not retried, get no span or ``operation`` event, and error statuses
        come back as responses (not tether's errors). Use :meth:`request` for
        those. *kwargs* go to :class:`httpx.AsyncClient` (``transport=``, ...).
        """
        current = self.session
        current.ensure_usable()
        async with self.provider.bound_client(
            current, verify=verify, **kwargs
        ) as bound:
            yield bound


class SyncSipherHandle(SyncSessionHandle[SipherHandle]):
    """
    :class:`SipherHandle` for synchronous code.
    """

    __slots__ = ()

    def request(
        self, method: str, url: str, *, ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """
        See :meth:`SipherHandle.request`.
        """
        return self.call(self.handle.request, method, url, ok=ok, **kwargs)

    @contextlib.contextmanager
    def client(
        self, *, verify: str | None = None, **kwargs: Any
    ) -> Iterator[httpx.Client]:
        """
        A raw :class:`httpx.Client` bound to the session: :meth:`SipherHandle.client`
        for synchronous code, with the same checks and the same limits.

        Its requests are sent from the calling thread; before each, the
        liveness check runs on the manager's event loop (so do not use it from
        that loop's thread). *kwargs* go to :class:`httpx.Client`.
        """
        current = self.session
        current.ensure_usable()
        provider = self.handle.provider
        options = provider.client_options(provider.config)
        kwargs.setdefault("timeout", options.timeout)
        with httpx.Client(
            base_url=options.base_url,
            auth=_SyncSessionAuth(self, current, verify),
            **kwargs,
        ) as client:
            yield client


class _SyncSessionAuth(httpx.Auth):
    # SipherSessionAuth for a sync client: the liveness check is a blocking
    # call onto the manager's event loop.

    def __init__(
        self, handle: SyncSipherHandle, session: Session, verify: str | None
    ) -> None:
        self._handle = handle
        self._session = session
        self._verify = verify

    def __repr__(self) -> str:
        return f"<SyncSipherSessionAuth session={self._session.id!r}>"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        provider = self._handle.handle.provider
        self._handle.call(provider.ensure_live, self._session, verify=self._verify)
        bind_request(provider, self._session, request)
        yield request

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        msg = "this auth is for the httpx.Client of SyncSipherHandle.client()"
        raise RuntimeError(msg)
