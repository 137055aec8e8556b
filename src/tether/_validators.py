"""
attrs validators that raise tether's typed errors.

attrs' own raise ``ValueError`` or ``TypeError``; ours raise
:class:`~tether.exceptions.ConfigError` (a ``ValueError``) naming the field, so
bad configuration is one catchable error before any network call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

from tether.exceptions import ConfigError


Validator = Callable[[Any, Any, Any], None]


def _number(owner: Any, attribute: Any, value: Any, *, integer: bool) -> float:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = "an integer" if integer else "a number"
        msg = (
            f"{type(owner).__name__}.{attribute.name} must be {expected}, not {value!r}"
        )
        raise ConfigError(msg)
    if not math.isfinite(value):
        msg = f"{type(owner).__name__}.{attribute.name} must be finite, not {value!r}"
        raise ConfigError(msg)
    return float(value)


def number(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    integer: bool = False,
    optional: bool = False,
) -> Validator:
    """
    A number (or an integer) within bounds; ``None`` too when *optional*.
    """

    def check(owner: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        x = _number(owner, attribute, value, integer=integer)
        bad = (
            (ge is not None and x < ge)
            or (gt is not None and x <= gt)
            or (le is not None and x > le)
        )
        if bad:
            bounds = []
            if ge is not None:
                bounds.append(f">= {ge:g}")
            if gt is not None:
                bounds.append(f"> {gt:g}")
            if le is not None:
                bounds.append(f"<= {le:g}")
            msg = (
                f"{type(owner).__name__}.{attribute.name} must be "
                f"{' and '.join(bounds)}, not {value!r}"
            )
            raise ConfigError(msg)

    return check


def one_of(choices: Collection[str]) -> Validator:
    """
    One of *choices*.
    """

    def check(owner: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            allowed = ", ".join(map(repr, choices))
            msg = f"{type(owner).__name__}.{attribute.name} must be one of {allowed}, not {value!r}"
            raise ConfigError(msg)

    return check


def boolean(owner: Any, attribute: Any, value: Any) -> None:
    """
    A bool.
    """
    if not isinstance(value, bool):
        msg = f"{type(owner).__name__}.{attribute.name} must be True or False, not {value!r}"
        raise ConfigError(msg)
