"""
Values the sandbox provider returns for a session's record, usage, app URL and
egress policy.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import attrs


if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


__all__ = ["AppURL", "EgressPolicy", "SessionInfo", "SessionUsage"]


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    # A lone string is one entry, not its characters; a non-string entry is
    # kept as given, so the provider can name it in its error.
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen(kw_only=True)
class SessionInfo:
    """
    ``GET /v1/sessions/session/{id}``: the service's record of the session.

    InstaVM documents this answer only as "session record details" with a
    ``session_id``; everything else it sends is in :attr:`raw`, unparsed.

    Attributes:
        session_id: The service's session id.
        raw: The whole response body.
    """

    session_id: str
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen, repr=False)


@attrs.frozen(kw_only=True)
class SessionUsage:
    """
    ``GET /v1/sessions/usage/{id}``: what the session has used.

    InstaVM does not document the fields of this answer, so the provider does
    not guess them: they are in :attr:`raw` as the service sent them.

    Attributes:
        session_id: The service's session id (the one asked about).
        raw: The whole response body.
    """

    session_id: str
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen, repr=False)


@attrs.frozen(kw_only=True)
class AppURL:
    """
    ``GET /v1/sessions/app-url/{id}`` (InstaVM's ``AppURLResponse``): a public
    URL for a port a service listens on inside the VM.

    Attributes:
        url: The public URL of the port.
        direct_url: The VM's direct subdomain URL for the port.
        vm_ip: The VM's internal address (for debugging).
        port: The port exposed.
        vm_id: The VM serving it; the URL dies with this VM.
        session_id: The service's session id.
        status: The VM's state (``"active"``, ``"killed"``).
        expires_in_seconds: Whole seconds until the VM is killed, if known.
        raw: The whole response body.
    """

    url: str
    direct_url: str
    vm_ip: str
    port: int
    vm_id: str
    session_id: str
    status: str
    expires_in_seconds: int | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen, repr=False)


@attrs.frozen(kw_only=True)
class EgressPolicy:
    """
    What outbound connections a session's VM may make. Egress is deny-by-default:
    ``EgressPolicy()`` allows nothing.

    Setting a policy replaces the whole policy (the provider sends every field).

    Attributes:
        allow_package_managers: Let pip, apt and npm reach their registries.
        allow_http: Allow outbound HTTP (port 80).
        allow_https: Allow outbound HTTPS (port 443).
        allowed_domains: Domains the VM may reach, e.g. ``"api.openai.com"``.
        allowed_cidrs: Address ranges the VM may reach, e.g. ``"10.0.0.0/8"``.
    """

    allow_package_managers: bool = False
    allow_http: bool = False
    allow_https: bool = False
    allowed_domains: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    allowed_cidrs: tuple[str, ...] = attrs.field(default=(), converter=_strings)
