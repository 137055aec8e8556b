"""
The Morpheus provider's configuration.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import attrs

from tether import Secret
from tether.abc import ProviderConfig
from tether.exceptions import ConfigError


#: Where the public gateway lives. Paths below it start with ``/api/v1``.
DEFAULT_BASE_URL: Final = "https://api.mor.org"

#: ``sk-`` + 6 characters (the 9-character prefix the gateway looks up), a dot,
#: then the secret (``secrets.token_hex(32)`` on the real gateway).
API_KEY_RE: Final = re.compile(r"^sk-[A-Za-z0-9]{6}\.[A-Za-z0-9_-]+$")

Mode = Literal["auto", "sessions", "lease"]
MODES: Final = ("auto", "sessions", "lease")


def _to_secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        # Never echo the value: it may be the key itself.
        msg = f"morpheus: api_key must be a string, not {type(value).__name__}"
        raise ConfigError(msg, provider="morpheus")
    return Secret(value.strip())


def _to_optional_secret(value: Any) -> Secret | None:
    if value is None or value == "":
        return None
    return _to_secret(value)


def check_api_key_format(value: str) -> None:
    """
    Check an API key's shape locally, without ever echoing it.

    Raises:
        ConfigError: It is not ``sk-`` + 6 characters + ``.`` + a secret.
    """
    if API_KEY_RE.fullmatch(value) is None:
        msg = (
            "morpheus: api_key is malformed: expected 'sk-' followed by 6 letters "
            "or digits (the 9-character prefix), a '.', and the secret"
        )
        raise ConfigError(msg, provider="morpheus")


def _validate_api_key(_instance: object, _attribute: object, value: Secret) -> None:
    check_api_key_format(value.reveal())


def _validate_mode(_instance: object, _attribute: object, value: str) -> None:
    if value not in MODES:
        msg = f"morpheus: mode must be one of {', '.join(MODES)}, not {value!r}"
        raise ConfigError(msg, provider="morpheus")


def _check_failures(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = (
            "morpheus: lease_failures_before_lost must be a positive integer, "
            f"not {value!r}"
        )
        raise ConfigError(msg, provider="morpheus")


@attrs.frozen(kw_only=True)
class MorpheusConfig(ProviderConfig):
    """
    How to reach a Morpheus API Gateway.

    Attributes:
        base_url: The gateway's root (``/api/v1/...`` and ``/health`` live below it).
        api_key: The gateway API key, ``sk-XXXXXX.<secret>``; sent as
            ``Authorization: Bearer sk-...``. Env: ``TETHER_MORPHEUS_API_KEY``.
        access_token: A JWT for the account routes (``/auth/keys``,
            ``/auth/private-key``, ``/auth/delegation``, ``/automation/settings``).
            Optional; only those routes need it.
        mode: ``"sessions"`` for gateways with ``/api/v1/session/*`` (up to
            v1.14.x), ``"lease"`` for today's gateway (no session routes: a
            tether session is a client-side lease over key + model), or
            ``"auto"`` to detect it once from the OpenAPI document.
        lease_failures_before_lost: In lease mode, consecutive failed chats
            (the gateway's pool failing the model: 5xx, ``proxy_error``,
            ``session not found``, truncated streams) after which the lease
            pings ``GONE``; fewer ping ``DEGRADED``. Like the manager's
            ``HealthPolicy.failures_before_lost`` for failed pings.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: Secret = attrs.field(converter=_to_secret, validator=_validate_api_key)
    access_token: Secret | None = attrs.field(
        default=None, converter=_to_optional_secret
    )
    mode: Mode = attrs.field(default="auto", validator=_validate_mode)
    lease_failures_before_lost: int = attrs.field(
        default=3, validator=lambda _i, _a, v: _check_failures(v)
    )
