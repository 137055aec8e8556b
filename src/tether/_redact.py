"""
Keeping secrets out of reprs, logs, exceptions and stored state.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Collection, Mapping, MutableMapping
from typing import Any, Final, final


REDACTED: Final = "***"

# Keys whose values are secrets wherever they appear: request bodies, error
# bodies, log events. Compared lower-cased, with "-" folded to "_".
_SECRET_KEYS: Final = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "authorization",
        "authorization_token",
        "password",
        "private_key",
        "privatekey",
        "refresh_token",
        "secret",
        "token",
        "x_api_key",
    }
)

# Names providers declare secret (their headers, their services' response
# fields), normalised like _SECRET_KEYS: secret wherever they appear.
_DECLARED_KEYS: set[str] = set()

# Shapes of secrets that may hide inside free text (error messages, bodies).
_SECRET_PATTERNS: Final = (
    # Morpheus-style API keys: sk-XXXXXX.secret
    re.compile(r"\bsk-[A-Za-z0-9_-]{6}\.[A-Za-z0-9_\-]+"),
    # Authorization header values.
    re.compile(r"(?i)\b(Bearer|token)\s+[A-Za-z0-9._~+/=-]{6,}"),
    # Hex private keys.
    re.compile(r"\b0x[0-9a-fA-F]{64}\b"),
)
# A password in a URL's userinfo: scheme://user:password@host
_URL_PASSWORD: Final = re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]+@")

# Shorter values would mask ordinary words: they are masked only where a key
# or a Secret says so, not by value in free text.
_MIN_BY_VALUE: Final = 8

# Every Secret alive in this process: their values are masked wherever
# redaction runs (a key the service quotes back in an error, say).
_LIVE: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()


@final
class Secret:
    """
    A secret value (API key, token, private key) that never shows itself.

    Its ``repr`` and ``str`` are masked, it compares by value, and the value comes
    out only through :meth:`reveal`, where the provider puts it on the wire.

    >>> key = Secret("sk-abcdef.very-secret")
    >>> key
    Secret('***')
    >>> key.reveal()
    'sk-abcdef.very-secret'
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str | Secret) -> None:
        raw: object = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(raw, str):
            msg = f"a secret must be a string, not {type(raw).__name__}"
            raise TypeError(msg)
        self._value = raw
        if len(raw) >= _MIN_BY_VALUE:
            _LIVE[id(self)] = self

    def reveal(self) -> str:
        """
        Return the secret itself: only for putting it on the wire.
        """
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("tether.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling a secret would put it in stored state: refuse.
        msg = "a Secret cannot be pickled"
        raise TypeError(msg)


@final
class MaskedURL(str):
    """
    A URL string whose ``repr`` masks the password in its userinfo: the value
    itself is unchanged, so clients still get the whole URL.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(_URL_PASSWORD.sub(rf"\1:{REDACTED}@", str.__str__(self)))


def mask_url(value: str) -> str:
    """
    *value*, as a :class:`MaskedURL` if it holds a password in its userinfo.
    """
    if _URL_PASSWORD.search(value):
        return MaskedURL(value)
    return value


def _normalise(key: str) -> str:
    return key.lower().replace("-", "_")


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = _normalise(key)
    return name in _SECRET_KEYS or name in _DECLARED_KEYS


def declare_secret_keys(names: Collection[str]) -> None:
    """
    Treat *names* (header names, response fields) as secret keys everywhere:
    their values are masked in errors, events, records and telemetry.
    """
    _DECLARED_KEYS.update(_normalise(n) for n in names)


def remember_secrets(value: Any, keys: Collection[str] = ()) -> list[Secret]:
    """
    The values under secret keys (and *keys*) anywhere inside *value*, as live
    :class:`Secret` objects: while the caller holds them, those values are
    masked by value wherever redaction runs (a service that quotes them back).
    """
    extra = {_normalise(k) for k in keys}
    found: list[Secret] = []

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            for k, v in item.items():
                if isinstance(v, str) and (
                    _is_secret_key(k) or (isinstance(k, str) and _normalise(k) in extra)
                ):
                    found.append(Secret(v))
                else:
                    walk(v)
        elif isinstance(item, list | tuple):
            for v in item:
                walk(v)

    walk(value)
    return found


def redact_text(text: str) -> str:
    """
    Mask every secret in *text*: the value of every live :class:`Secret`,
    secret-shaped substrings, and passwords in URLs.
    """
    for secret in list(_LIVE.values()):
        value = secret.reveal()
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)


def redact_params(params: Mapping[str, Any], secret: Collection[str]) -> dict[str, Any]:
    """
    *params* as they may be stored: the values of the *secret* parameters
    masked (a mapping keeps its keys, so the names stay known), and so are
    :class:`Secret` values and the values of secret keys (``api_key``, ...)
    anywhere inside. Other values stay as they are (ids may look like keys).
    """
    result: dict[str, Any] = {}
    for key, value in params.items():
        if (key in secret or _is_secret_key(key)) and _maskable(value):
            if isinstance(value, Mapping):
                result[key] = dict.fromkeys(value, REDACTED)
            else:
                result[key] = REDACTED
        else:
            result[key] = _mask_secrets(value)
    return result


def _maskable(value: Any) -> bool:
    # Secrets are text: a number or a flag under a secret-sounding key (a
    # fencing "token", say) is not one.
    return not (value is None or value == "" or isinstance(value, bool | int | float))


def _mask_secrets(value: Any) -> Any:
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Mapping):
        return redact_params(value, ())
    if isinstance(value, list | tuple):
        return type(value)(_mask_secrets(v) for v in value)
    return value


def redact(value: Any) -> Any:
    """
    Return *value* with secrets masked: secret keys' values, secret-shaped strings.

    Works on JSON-like data (mappings, lists, strings); other values pass through,
    except :class:`Secret`, which becomes the mask.
    """
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _is_secret_key(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """
    A structlog processor that masks secrets in every event.

    tether never logs a secret itself; add this processor to your own structlog
    configuration to keep other code's events clean as well::

        structlog.configure(processors=[tether.redact_secrets, ...])
    """
    for k in list(event_dict):
        v = event_dict[k]
        if _is_secret_key(k) and v not in (None, ""):
            event_dict[k] = REDACTED
        else:
            event_dict[k] = redact(v)
    return event_dict
