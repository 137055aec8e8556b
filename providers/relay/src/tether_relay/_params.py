# Copyright 2026 The tether developers. MIT license.
"""
Local validation of every relay parameter, before any request is sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from tether.exceptions import InvalidParameterError


PROVIDER: Final = "relay"

#: The ``filter_type`` values of ``RelayFilterModel`` in the spec.
FILTER_TYPES: Final = ("any", "all", "not")

_CREATE_KEYS: Final = frozenset({"users", "filters", "webhook_url"})
_UPDATE_KEYS: Final = frozenset({"authorize", "revoke"})


def _fail(
    message: str, *, field: str, value: object, allowed: str | None = None
) -> InvalidParameterError:
    return InvalidParameterError(
        f"relay: {message}",
        field=field,
        value=value,
        allowed=allowed,
        provider=PROVIDER,
    )


def parse_ip(value: object, *, field: str, allow_private: bool) -> str:
    """
    Return *value* as a normalised IP address string, or raise.

    Edgegap places the relay near the users' public addresses and fails the
    session when one is not routable (loopback, private, link-local...), so
    those are refused unless *allow_private* says otherwise.
    """
    if isinstance(value, Mapping) and set(value) == {"ip"}:
        value = value["ip"]
    if not isinstance(value, str):
        raise _fail(
            f"{field} must be an IP address string, not {type(value).__name__}",
            field=field,
            value=value,
            allowed="an IPv4 or IPv6 address",
        )
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise _fail(
            f"{field} is not an IP address: {value!r}",
            field=field,
            value=value,
            allowed="an IPv4 or IPv6 address",
        ) from None
    if not allow_private and not address.is_global:
        raise _fail(
            f"{field} {value!r} is not a public address; the relay cannot reach it",
            field=field,
            value=value,
            allowed="a public (globally routable) address",
        )
    return address.compressed


def parse_ips(
    value: object, *, field: str, allow_private: bool, min_items: int
) -> list[str]:
    """
    Return a list of distinct, normalised IP addresses, or raise.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _fail(
            f"{field} must be a list of IP addresses",
            field=field,
            value=value,
            allowed="a list of IP address strings",
        )
    if len(value) < min_items:
        raise _fail(
            f"{field} needs at least {min_items} IP address(es)",
            field=field,
            value=list(value),
            allowed=f"at least {min_items} IP address(es)",
        )
    ips: list[str] = []
    for i, item in enumerate(value):
        ip = parse_ip(item, field=f"{field}[{i}]", allow_private=allow_private)
        if ip in ips:
            raise _fail(
                f"{field} lists {ip} twice",
                field=field,
                value=ip,
                allowed="distinct IP addresses",
            )
        ips.append(ip)
    return ips


def parse_filters(value: object) -> list[dict[str, Any]]:
    """
    Validate ``filters``: a list of ``{field, values, filter_type}`` objects.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _fail(
            "filters must be a list of {field, values, filter_type} objects",
            field="filters",
            value=value,
            allowed="a list of {field, values, filter_type} objects",
        )
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        name = f"filters[{i}]"
        if not isinstance(item, Mapping):
            raise _fail(
                f"{name} must be an object",
                field=name,
                value=item,
                allowed="{field, values, filter_type}",
            )
        extra = set(item) - {"field", "values", "filter_type"}
        missing = {"field", "values", "filter_type"} - set(item)
        if extra or missing:
            raise _fail(
                f"{name} must have exactly field, values and filter_type",
                field=name,
                value=dict(item),
                allowed="{field, values, filter_type}",
            )
        field = item["field"]
        if not isinstance(field, str) or not field:
            raise _fail(
                f"{name}.field must be a non-empty string",
                field=f"{name}.field",
                value=field,
                allowed="a non-empty string",
            )
        values = item["values"]
        if (
            isinstance(values, str | bytes)
            or not isinstance(values, Sequence)
            or not all(isinstance(v, str) for v in values)
        ):
            raise _fail(
                f"{name}.values must be a list of strings",
                field=f"{name}.values",
                value=values,
                allowed="a list of strings",
            )
        filter_type = item["filter_type"]
        if filter_type not in FILTER_TYPES:
            raise _fail(
                f"{name}.filter_type must be one of {', '.join(FILTER_TYPES)}",
                field=f"{name}.filter_type",
                value=filter_type,
                allowed=", ".join(FILTER_TYPES),
            )
        out.append({"field": field, "values": list(values), "filter_type": filter_type})
    return out


def parse_webhook_url(value: object) -> str:
    """
    Validate ``webhook_url``: an absolute http(s) URL.
    """
    if not isinstance(value, str):
        raise _fail(
            "webhook_url must be a string",
            field="webhook_url",
            value=value,
            allowed="an absolute http(s) URL",
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail(
            f"webhook_url is not an absolute http(s) URL: {value!r}",
            field="webhook_url",
            value=value,
            allowed="an absolute http(s) URL",
        )
    return value


def parse_create(params: Mapping[str, Any], *, allow_private: bool) -> dict[str, Any]:
    """
    Validate create parameters: ``users`` (required), ``filters``, ``webhook_url``.
    """
    unknown = sorted(set(params) - _CREATE_KEYS)
    if unknown:
        raise _fail(
            f"unknown parameter {unknown[0]!r}",
            field=unknown[0],
            value=params[unknown[0]],
            allowed="users, filters, webhook_url",
        )
    if "users" not in params:
        raise _fail(
            "users is required: the IP addresses of the session's players",
            field="users",
            value=None,
            allowed="a list of at least one IP address",
        )
    result: dict[str, Any] = {
        "users": parse_ips(
            params["users"], field="users", allow_private=allow_private, min_items=1
        )
    }
    if params.get("filters") is not None:
        result["filters"] = parse_filters(params["filters"])
    if params.get("webhook_url") is not None:
        result["webhook_url"] = parse_webhook_url(params["webhook_url"])
    return result


def parse_update(changes: Mapping[str, Any], *, allow_private: bool) -> dict[str, Any]:
    """
    Validate update changes: ``authorize`` and/or ``revoke``, lists of IPs.
    """
    unknown = sorted(set(changes) - _UPDATE_KEYS)
    if unknown:
        raise _fail(
            f"cannot update {unknown[0]!r}",
            field=unknown[0],
            value=changes[unknown[0]],
            allowed="authorize, revoke",
        )
    result: dict[str, list[str]] = {}
    for key in ("authorize", "revoke"):
        if changes.get(key) is None:
            continue
        value = changes[key]
        if isinstance(value, str):
            value = [value]
        # Revoking needs no reachability check: any address once authorized
        # may be revoked.
        result[key] = parse_ips(
            value,
            field=key,
            allow_private=allow_private or key == "revoke",
            min_items=0,
        )
    if not any(result.values()):
        raise _fail(
            "update needs at least one IP to authorize or revoke",
            field="authorize",
            value=None,
            allowed="authorize=[ip, ...] and/or revoke=[ip, ...]",
        )
    both = set(result.get("authorize", ())) & set(result.get("revoke", ()))
    if both:
        ip = min(both)
        raise _fail(
            f"{ip} is both authorized and revoked",
            field="revoke",
            value=ip,
            allowed="an IP in authorize or revoke, not both",
        )
    return {k: v for k, v in result.items() if v}


def parse_token(value: object) -> int | None:
    """
    A relay authorization token from a response: an unsigned integer, kept whole.

    Tokens exceed 2**31 (e.g. 3500589645); they are Python ints and never go
    through a fixed-width type.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
