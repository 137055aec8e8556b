"""
The Sipher provider's configuration.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from tether import Secret
from tether.abc import ProviderConfig
from tether.exceptions import ConfigError
from tether_sipher._defaults import VIEWING_KEY_PATTERN


#: Where the real service lives.
DEFAULT_BASE_URL: Final = "https://sipher.sip-protocol.org"

_AUTH_SCHEMES: Final = ("x-api-key", "bearer")
_VERIFY_POLICIES: Final = ("stale", "always", "never")


def _one_of(*allowed: str) -> Any:
    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value not in allowed:
            msg = (
                f"sipher: {attribute.name} must be one of {', '.join(allowed)}, "
                f"not {value!r}"
            )
            raise ConfigError(msg, provider="sipher")

    return check


def _non_negative(_instance: Any, attribute: Any, value: float) -> None:
    if value < 0:
        msg = f"sipher: {attribute.name} must be >= 0, not {value!r}"
        raise ConfigError(msg, provider="sipher")


def _lower(value: Any) -> str:
    return str(value).lower()


def _optional_secret(value: Any) -> Secret | None:
    if value is None or value == "":
        return None
    return Secret(value)


def _check_api_key(_instance: Any, _attribute: Any, value: Secret) -> None:
    raw = value.reveal()
    if not raw.strip():
        raise ConfigError("sipher: api_key must not be empty", provider="sipher")
    if raw != raw.strip() or any(c.isspace() for c in raw):
        # The value is a secret: say what is wrong, never what it is.
        raise ConfigError(
            "sipher: api_key must not contain whitespace", provider="sipher"
        )


def _check_viewing_key(_instance: Any, _attribute: Any, value: Secret | None) -> None:
    if value is not None and not VIEWING_KEY_PATTERN.match(value.reveal()):
        raise ConfigError(
            "sipher: default_viewing_key must be 0x followed by hex digits",
            provider="sipher",
        )


def _optional_quota(_instance: Any, _attribute: Any, value: int | None) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise ConfigError(
            f"sipher: session_quota must be a whole number >= 1, not {value!r}",
            provider="sipher",
        )


@attrs.frozen(kw_only=True, repr=False)
class SipherConfig(ProviderConfig):
    """
    How to reach Sipher and how careful to be with ``X-Session-Id``.

    Every field can come from ``TETHER_SIPHER_<FIELD>`` environment variables.

    Attributes:
        base_url: The service (``https://sipher.sip-protocol.org``).
        api_key: A pro or enterprise key (``sk_pro_...``, ``sk_ent_...``, or a
            legacy ``API_KEYS`` key). Free keys get 403 ``TIER_ACCESS_DENIED``.
        auth_scheme: ``"x-api-key"`` (``X-API-Key: <key>``) or ``"bearer"``
            (``Authorization: Bearer <key>``); the service accepts both.
        default_viewing_key: A viewing key put into every created session's
            defaults unless the create gives its own. Kept here, as a secret,
            so sessions can be re-created without the key ever being stored.
        verify: When session-bound requests confirm the session with a ``GET``
            first: ``"stale"`` (when the last confirmation is older than
            ``verify_after``), ``"always"``, or ``"never"`` (local expiry only).
        verify_after: Seconds a confirmation stays fresh for ``"stale"``.
        expiry_margin: Seconds before ``expiresAt`` from which a session counts
            as expired locally, covering clock skew and transit time.
        session_quota: The key's daily quota of successful ``/v1/sessions``
            requests (pro: 2,000; enterprise: 20,000), if known. Pings, gets and
            closes all spend it, and a spent quota refuses closes too; with it
            set, pings stop asking the service while what is left would not
            cover closing every session this provider knows.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: Secret = attrs.field(converter=Secret, validator=_check_api_key)
    auth_scheme: str = attrs.field(
        default="x-api-key",
        converter=_lower,
        validator=_one_of(*_AUTH_SCHEMES),
    )
    default_viewing_key: Secret | None = attrs.field(
        default=None, converter=_optional_secret, validator=_check_viewing_key
    )
    verify: str = attrs.field(default="stale", validator=_one_of(*_VERIFY_POLICIES))
    verify_after: float = attrs.field(default=60.0, validator=_non_negative)
    expiry_margin: float = attrs.field(default=5.0, validator=_non_negative)
    session_quota: int | None = attrs.field(default=None, validator=_optional_quota)

    def __repr__(self) -> str:
        return (
            f"SipherConfig(base_url={self.base_url!r}, api_key=Secret('***'), "
            f"auth_scheme={self.auth_scheme!r}, "
            f"default_viewing_key={'set' if self.default_viewing_key else None}, "
            f"verify={self.verify!r}, timeout={self.timeout!r})"
        )
