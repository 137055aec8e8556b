"""
Sipher's session ``defaults``: the fields, their enums, and local validation.

The enums and patterns are copied field by field from the service's zod schema
(``src/routes/session.ts``) and its OpenAPI export (``createSession_request_defaults``).
The emulator imports them too, so client and emulator cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from tether.exceptions import InvalidParameterError


#: ``chain``: every chain the service accepts.
CHAINS: Final = (
    "solana",
    "ethereum",
    "polygon",
    "arbitrum",
    "optimism",
    "base",
    "near",
    "aptos",
    "sui",
    "cosmos",
    "osmosis",
    "injective",
    "celestia",
    "sei",
    "dydx",
    "bitcoin",
    "zcash",
)
#: ``privacyLevel``.
PRIVACY_LEVELS: Final = ("standard", "shielded", "maximum")
#: ``rpcProvider``.
RPC_PROVIDERS: Final = ("helius", "quicknode", "triton", "generic")
#: ``backend``: only ``sip-native`` since the mock backends were removed.
BACKENDS: Final = ("sip-native",)
#: ``defaultViewingKey``: 0x-prefixed hex of any length.
VIEWING_KEY_PATTERN: Final = re.compile(r"^0x[0-9a-fA-F]+$")
#: Session ids: ``sess_`` and 64 lower-case hex digits.
SESSION_ID_PATTERN: Final = re.compile(r"^sess_[0-9a-f]{64}$")

#: The JSON name of the one secret field.
VIEWING_KEY: Final = "defaultViewingKey"

#: JSON name -> allowed values, for the enum fields.
ENUMS: Final[Mapping[str, tuple[str, ...]]] = {
    "chain": CHAINS,
    "privacyLevel": PRIVACY_LEVELS,
    "rpcProvider": RPC_PROVIDERS,
    "backend": BACKENDS,
}

#: Every name a user may pass -> the JSON name. Both the JSON names and the
#: official SDKs' snake_case names are accepted.
ALIASES: Final[Mapping[str, str]] = {
    "chain": "chain",
    "privacyLevel": "privacyLevel",
    "privacy_level": "privacyLevel",
    "rpcProvider": "rpcProvider",
    "rpc_provider": "rpcProvider",
    "backend": "backend",
    "defaultViewingKey": VIEWING_KEY,
    "default_viewing_key": VIEWING_KEY,
}

#: Names people reach for to set the TTL; the TTL is tether's ``lifetime=``.
_TTL_NAMES: Final = frozenset({"ttl", "ttlSeconds", "ttl_seconds", "lifetime"})


def _plain(value: object) -> str | None:
    """
    The string inside *value* (a str or a :class:`tether.Secret`-like object).
    """
    if isinstance(value, str):
        return value
    reveal = getattr(value, "reveal", None)
    if callable(reveal):
        revealed = reveal()
        if isinstance(revealed, str):
            return revealed
    return None


def normalise_defaults(
    params: Mapping[str, Any], *, provider: str, operation: str
) -> dict[str, str]:
    """
    Validate defaults given by any accepted name and return them by JSON name.

    *params* may hold the fields directly (``chain="solana"``), under a
    ``defaults`` mapping, or both (a field may not be given twice). The viewing
    key, if any, is returned in plain text: the caller keeps it out of stored
    state.

    Raises:
        InvalidParameterError: An unknown name, a value outside its enum, a
            malformed viewing key, or a TTL change.
    """
    flat: dict[str, tuple[str, Any]] = {}

    def add(name: str, value: Any) -> None:
        if name in _TTL_NAMES:
            if operation == "update":
                msg = (
                    f"{provider}: a session's TTL cannot change after create "
                    "(the service ignores ttlSeconds on PATCH)"
                )
                raise InvalidParameterError(
                    msg,
                    field=name,
                    value=value,
                    allowed="no TTL on update; create a new session instead",
                    provider=provider,
                )
            msg = f"{provider}: give the TTL as tether's lifetime=, not {name!r}"
            raise InvalidParameterError(
                msg,
                field=name,
                value=value,
                allowed="lifetime=<seconds> (60 to 86400)",
                provider=provider,
            )
        json_name = ALIASES.get(name)
        if json_name is None:
            allowed = ", ".join(sorted(set(ALIASES.values())))
            msg = f"{provider} takes no parameter {name!r}"
            raise InvalidParameterError(
                msg, field=name, value=None, allowed=allowed, provider=provider
            )
        if json_name in flat:
            msg = f"{provider}: {json_name!r} is given twice (as {flat[json_name][0]!r} and {name!r})"
            raise InvalidParameterError(
                msg, field=name, value=None, allowed="one value", provider=provider
            )
        flat[json_name] = (name, value)

    for name, value in params.items():
        if name == "defaults":
            if not isinstance(value, Mapping):
                msg = f"{provider}: defaults must be a mapping"
                raise InvalidParameterError(
                    msg,
                    field="defaults",
                    value=type(value).__name__,
                    allowed="a mapping of default fields",
                    provider=provider,
                )
            for inner, inner_value in value.items():
                add(str(inner), inner_value)
        else:
            add(name, value)

    result: dict[str, str] = {}
    for json_name, (given_as, value) in flat.items():
        if json_name == VIEWING_KEY:
            plain = _plain(value)
            if plain is None or not VIEWING_KEY_PATTERN.match(plain):
                # The value is a secret: it never goes into the error.
                msg = f"{provider}: {given_as} must be 0x followed by hex digits"
                raise InvalidParameterError(
                    msg,
                    field=given_as,
                    value=None,
                    allowed="0x-prefixed hex string (^0x[0-9a-fA-F]+$)",
                    provider=provider,
                )
            result[json_name] = plain
            continue
        allowed_values = ENUMS[json_name]
        if value not in allowed_values:
            msg = f"{provider}: {given_as} must be one of {', '.join(allowed_values)}, not {value!r}"
            raise InvalidParameterError(
                msg,
                field=given_as,
                value=value,
                allowed=", ".join(allowed_values),
                provider=provider,
            )
        result[json_name] = value
    return result
