"""
A provider's create parameters, as its own validation names them.

Providers declare no schema: :meth:`~tether.abc.Provider.parse_create` is the
declaration, and an unknown parameter's
:class:`~tether.exceptions.InvalidParameterError` lists the allowed ones. So
the command line asks it, with a parameter no provider takes, on an instance
built with placeholder credentials that never sends a request.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import attrs
import httpx

from tether._emulators import build_emulator
from tether.exceptions import InvalidParameterError


if TYPE_CHECKING:
    from tether.abc import Provider


# No provider takes it: a parameter name cannot hold a NUL.
_PROBE: Final = "\0tether-help"


def _config(cls: type[Provider[Any]], name: str) -> Any:
    """
    A config for *cls* that sends nothing: its emulator's demo config where
    one is installed (credentials of the right shape), else placeholders for
    the required fields; ``None`` when neither builds.
    """
    candidates: list[dict[str, Any]] = []
    # No emulator (or a broken one): the placeholders below.
    with contextlib.suppress(Exception):
        candidates.append(build_emulator(name).provider_config("http://127.0.0.1:9"))
    candidates.append(
        {
            field.name: "-"
            for field in attrs.fields(cls.config_class)
            if field.init and field.default is attrs.NOTHING
        }
    )
    for values in candidates:
        try:
            return cls.config_class(**values)
        except Exception:  # noqa: BLE001, S112 -- the next candidate, then none
            continue
    return None


def provider_parameters(cls: type[Provider[Any]], name: str) -> list[str]:
    """
    The create parameters *cls* allows, or ``[]`` when its validation does not
    say (it takes any, or its error names no ``allowed`` values).
    """
    config = _config(cls, name)
    if config is None:
        return []
    # Nothing is sent: the client only satisfies the constructor.
    provider = cls(config, client=httpx.AsyncClient(), name=name)
    try:
        provider.parse_create({_PROBE: None})
    except InvalidParameterError as exc:
        allowed = exc.allowed
    except Exception:  # noqa: BLE001 -- a provider that fails here lists nothing
        return []
    else:
        return []
    if not isinstance(allowed, str) or not allowed:
        return []
    return [
        part.strip()
        for part in allowed.replace(" or ", ", ").split(",")
        if part.strip()
    ]
