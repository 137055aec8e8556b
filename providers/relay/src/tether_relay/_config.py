# Copyright 2026 The tether developers. MIT license.
"""
The relay provider's configuration.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from tether import Secret
from tether.abc import ProviderConfig
from tether.exceptions import ConfigError


DEFAULT_BASE_URL: Final = "https://api.edgegap.com"


def _check_token(_instance: Any, _attribute: Any, value: Secret) -> None:
    token = value.reveal()
    if not token:
        msg = "relay: api_token is empty (a relay-profile token from the dashboard)"
        raise ConfigError(msg, provider="relay")
    if token.lower().startswith("token ") or any(c.isspace() for c in token):
        # People paste the whole header value; tether adds the "token " prefix.
        msg = "relay: api_token must be the bare token, without 'token ' or spaces"
        raise ConfigError(msg, provider="relay")


def _bound(op: str, bound: float) -> Any:
    def check(_instance: Any, attribute: Any, value: float) -> None:
        ok = value > bound if op == ">" else value >= bound
        if isinstance(value, bool) or not ok:
            msg = f"relay: {attribute.name} must be {op} {bound}, not {value!r}"
            raise ConfigError(msg, provider="relay")

    return check


def _check_url(_instance: Any, _attribute: Any, value: str) -> None:
    if not value.startswith(("http://", "https://")):
        msg = f"relay: base_url must be an http(s) URL, not {value!r}"
        raise ConfigError(msg, provider="relay")


@attrs.frozen(kw_only=True)
class RelayConfig(ProviderConfig):
    """
    Configuration of the ``relay`` provider (Edgegap Distributed Relay).

    Every field can come from ``TETHER_RELAY_<FIELD>`` environment variables.

    Attributes:
        base_url: The Edgegap API.
        api_token: A **relay-profile** API token (a standard Edgegap API token
            is refused by the relay endpoints). Sent as
            ``Authorization: token <api_token>``.
        ready_timeout: Seconds :meth:`~tether_relay.RelayProvider.create` waits
            for a new session to become ready before deleting it and failing.
            Keep it below the manager's ``shield_timeout`` (30 s by default),
            which bounds a whole create.
        poll_initial: Seconds before the first readiness poll.
        poll_max: The longest wait between two readiness polls.
        poll_multiplier: How much the wait grows after each poll.
        cleanup_timeout: Seconds allowed for deleting a session that failed
            or was cancelled while becoming ready (shielded from cancellation).
        allow_private_ips: Accept non-public user addresses (loopback,
            private ranges). The service fails such sessions; only for tests.
        max_list_pages: A bound on the pages :meth:`list` follows.
    """

    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=_check_url)
    api_token: Secret = attrs.field(converter=Secret, validator=_check_token)
    ready_timeout: float = attrs.field(default=20.0, validator=_bound(">", 0))
    poll_initial: float = attrs.field(default=1.0, validator=_bound(">=", 0))
    poll_max: float = attrs.field(default=5.0, validator=_bound(">=", 0))
    poll_multiplier: float = attrs.field(default=1.5, validator=_bound(">=", 1))
    cleanup_timeout: float = attrs.field(default=10.0, validator=_bound(">", 0))
    allow_private_ips: bool = False
    max_list_pages: int = attrs.field(default=100, validator=_bound(">=", 1))
