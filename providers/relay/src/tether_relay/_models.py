# Copyright 2026 The tether developers. MIT license.
"""
Values the relay provider hands to its callers.

Relay authorization tokens (the session's and each user's) are credentials:
whoever holds one can use the relay. They are never stored on a
:class:`tether.Session`, never logged, and masked in every ``repr``; they come
out only through these values, which the caller asks for explicitly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final

import attrs

from tether_relay._params import parse_token


_MASK: Final = "***"


def _masked(value: object) -> str:
    return _MASK if value is not None else "None"


@attrs.frozen(kw_only=True)
class RelayUser:
    """
    One user authorized on a relay session, with the user's own token.

    Give :attr:`authorization_token` to that user's game client; revoking the
    user needs it too (:meth:`~tether_relay.RelayProvider.revoke_user` looks it
    up for you). The token is masked in ``repr``.

    Attributes:
        ip: The user's public IP address, as the service reports it.
        authorization_token: The user's token, an unsigned integer that may
            exceed 2**31.
        latitude: Where the service placed the user, if it says.
        longitude: Where the service placed the user, if it says.
    """

    ip: str
    authorization_token: int | None = attrs.field(repr=_masked)
    latitude: float | None = None
    longitude: float | None = None


@attrs.frozen(kw_only=True)
class RelayEndpoint:
    """
    Where a ready relay listens (not a secret).

    Attributes:
        ip: The relay's IP address.
        host: The relay's host name, e.g. ``7349356945f1.st.edgegap.net``.
        server_port: The port the game host connects to.
        server_protocol: Its protocol, e.g. ``"UDP"``.
        client_port: The port players connect to.
        client_protocol: Its protocol.
    """

    ip: str | None = None
    host: str | None = None
    server_port: int | None = None
    server_protocol: str | None = None
    client_port: int | None = None
    client_protocol: str | None = None


@attrs.frozen(kw_only=True)
class RelayCredentials:
    """
    Everything a game needs to use a relay session, tokens included.

    Get it from :meth:`~tether_relay.RelayProvider.credentials`. Tokens are
    masked in ``repr``.

    Attributes:
        session_id: The service's session id.
        session_token: The session's own authorization token.
        users: Every authorized user, with their tokens.
        relay: Where the relay listens, once linked.
    """

    session_id: str
    session_token: int | None = attrs.field(repr=_masked)
    users: tuple[RelayUser, ...] = ()
    relay: RelayEndpoint | None = None

    def token_for(self, ip: str) -> int | None:
        """
        The token of the user at *ip*, or ``None`` if that IP is not authorized.
        """
        wanted = normalise_ip(ip)
        for user in self.users:
            if user.ip == wanted:
                return user.authorization_token
        return None


def normalise_ip(value: str) -> str:
    """
    The compressed form of an address, or the string as it is if it is not one.
    """
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def user_from(raw: object) -> RelayUser | None:
    """
    A :class:`RelayUser` from a ``session_users`` item or ``session_user``.
    """
    if not isinstance(raw, Mapping):
        return None
    ip = raw.get("ip_address")
    if not isinstance(ip, str):
        return None
    return RelayUser(
        ip=normalise_ip(ip),
        authorization_token=parse_token(raw.get("authorization_token")),
        latitude=_number(raw.get("latitude")),
        longitude=_number(raw.get("longitude")),
    )


def users_from(payload: Mapping[str, Any]) -> tuple[RelayUser, ...]:
    """
    Every user in a ``RelaySession`` body (``[]`` while it initializes).
    """
    raw = payload.get("session_users")
    if not isinstance(raw, list):
        return ()
    return tuple(u for u in (user_from(item) for item in raw) if u is not None)


def _port(ports: Mapping[str, Any], side: str) -> tuple[int | None, str | None]:
    raw = ports.get(side)
    if not isinstance(raw, Mapping):
        return None, None
    port = raw.get("port")
    protocol = raw.get("protocol")
    return (
        port if isinstance(port, int) and not isinstance(port, bool) else None,
        protocol if isinstance(protocol, str) else None,
    )


def endpoint_from(payload: Mapping[str, Any]) -> RelayEndpoint | None:
    """
    The relay's endpoint from a ``RelaySession`` body (``None`` until linked).
    """
    relay = payload.get("relay")
    if not isinstance(relay, Mapping) or not relay:
        return None
    ports = relay.get("ports")
    ports = ports if isinstance(ports, Mapping) else {}
    server_port, server_protocol = _port(ports, "server")
    client_port, client_protocol = _port(ports, "client")
    ip = relay.get("ip")
    host = relay.get("host")
    return RelayEndpoint(
        ip=ip if isinstance(ip, str) else None,
        host=host if isinstance(host, str) else None,
        server_port=server_port,
        server_protocol=server_protocol,
        client_port=client_port,
        client_protocol=client_protocol,
    )


def public_data(payload: Mapping[str, Any]) -> dict[str, Any]:
    """
    What may be stored on a :class:`tether.Session`: no tokens.
    """
    endpoint = endpoint_from(payload)
    data: dict[str, Any] = {
        "users": [u.ip for u in users_from(payload)],
        "ready": payload.get("ready") is True,
        "linked": payload.get("linked") is True,
        "relay": attrs.asdict(endpoint) if endpoint is not None else None,
    }
    # Every key is always present: the manager merges ping data into the
    # session's, so a key that disappeared would linger with a stale value.
    error = payload.get("error")
    data["error"] = error if isinstance(error, str) and error else None
    webhook_url = payload.get("webhook_url")
    data["webhook_url"] = webhook_url if isinstance(webhook_url, str) else None
    return data


def credentials_from(session_id: str, payload: Mapping[str, Any]) -> RelayCredentials:
    return RelayCredentials(
        session_id=session_id,
        session_token=parse_token(payload.get("authorization_token")),
        users=users_from(payload),
        relay=endpoint_from(payload),
    )
