"""
The sandbox provider's configuration.
"""

from __future__ import annotations

from typing import Any

import attrs

from tether.abc import ProviderConfig
from tether.exceptions import ConfigError
from tether_sandbox._compat import Secret


__all__ = ["DEFAULT_BASE_URL", "SandboxConfig"]

#: Where InstaVM's API lives (the official SDK's default).
DEFAULT_BASE_URL = "https://api.instavm.io"


def _check_key(
    _instance: Any, _attribute: attrs.Attribute[Secret], value: Secret
) -> None:
    key = value.reveal()
    if not key.strip():
        msg = "sandbox: api_key must not be empty"
        raise ConfigError(msg, provider="sandbox")
    if any(ch.isspace() for ch in key) or not key.isprintable():
        # Never echo the key itself, even a broken one.
        msg = "sandbox: api_key contains whitespace or control characters"
        raise ConfigError(msg, provider="sandbox")


def _check_url(_instance: Any, _attribute: attrs.Attribute[str], value: str) -> None:
    if not value.startswith(("http://", "https://")):
        msg = f"sandbox: base_url must be an http(s) URL, not {value!r}"
        raise ConfigError(msg, provider="sandbox")


@attrs.frozen(kw_only=True)
class SandboxConfig(ProviderConfig):
    """
    How to reach InstaVM.

    Attributes:
        api_key: The API key (``instavm_sk_...``), sent as ``X-API-Key`` on
            every request and as ``api_key`` in the create body. Env var:
            ``TETHER_SANDBOX_API_KEY``.
        base_url: The API's base URL. Env var: ``TETHER_SANDBOX_BASE_URL``.
        timeout: Seconds for each HTTP request. ``execute`` raises it per call
            to cover the execution's own ``timeout``.
        execute_margin: Seconds added to an execution's ``timeout`` to get the
            HTTP timeout of ``/execute``, so the service answers before the
            client gives up.
    """

    api_key: Secret = attrs.field(converter=Secret, validator=_check_key)
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, validator=_check_url)
    execute_margin: float = attrs.field(default=15.0, validator=attrs.validators.ge(0))
