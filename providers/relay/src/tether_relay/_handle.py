"""
The relay session handle: player authorization as methods of the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.abc import SessionHandle, SyncSessionHandle
from tether_relay._models import RelayCredentials, RelayUser


if TYPE_CHECKING:
    from tether_relay._provider import RelayProvider  # noqa: F401


class RelayHandle(SessionHandle["RelayProvider"]):
    """
    A live relay session::

        async with manager.session(RelayProvider, users=["1.1.1.1"]) as relay:
            player = await relay.authorize_user("8.8.8.8")

    Each method is the provider's operation of the same name on this
    session, refused once the session ended, retried where safe, traced.
    """

    __slots__ = ()

    async def authorize_user(self, ip: str) -> RelayUser:
        """
        Authorize one more player (by IP) and return the player's token.
        """
        return await self.run(
            "authorize_user", lambda s: self.provider.authorize_user(s, ip)
        )

    async def revoke_user(self, ip: str) -> bool:
        """
        Remove one player; return whether the IP was authorized.
        """
        return await self.run("revoke_user", lambda s: self.provider.revoke_user(s, ip))

    async def credentials(self) -> RelayCredentials:
        """
        The session's tokens and relay endpoint, fetched now (never stored).
        """
        return await self.run("credentials", self.provider.credentials)


class SyncRelayHandle(SyncSessionHandle[RelayHandle]):
    """
    :class:`RelayHandle` for synchronous code.
    """

    __slots__ = ()

    def authorize_user(self, ip: str) -> RelayUser:
        return self.call(self.handle.authorize_user, ip)

    def revoke_user(self, ip: str) -> bool:
        return self.call(self.handle.revoke_user, ip)

    def credentials(self) -> RelayCredentials:
        return self.call(self.handle.credentials)
