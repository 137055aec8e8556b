"""
Argument types: ``KEY=VALUE`` pairs, parameters, durations, states.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any, Final

from tether._session import SessionState


_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def key_value(text: str) -> tuple[str, str]:
    """
    ``KEY=VALUE``, both strings.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        msg = f"expected KEY=VALUE, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return key, value


def param(text: str) -> tuple[str, Any]:
    """
    ``KEY=VALUE``; the value is read as JSON when it is valid JSON, else a string.
    """
    key, raw = key_value(text)
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def duration(text: str) -> float:
    """
    Seconds, with an optional unit: ``90``, ``90s``, ``15m``, ``2h``, ``1d``.
    """
    seconds = _seconds(text)
    if seconds <= 0:
        msg = f"a duration must be positive, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def grace(text: str) -> float:
    """
    A duration that may be ``0`` (no grace at all).
    """
    return _seconds(text)


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        msg = f"expected a duration such as 90, 90s, 15m, 2h or 1d, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    seconds = float(match[1]) * _UNITS[match[2]]
    if not math.isfinite(seconds) or seconds < 0:
        msg = f"a duration must be 0 or more, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def state(text: str) -> SessionState:
    """
    A session state by its value, in any case.
    """
    try:
        return SessionState(text.lower())
    except ValueError:
        known = ", ".join(s.value for s in SessionState)
        msg = f"unknown state {text!r} (known: {known})"
        raise argparse.ArgumentTypeError(msg) from None


def port(text: str) -> int:
    """
    A TCP port number, ``0`` (any free port) to 65535.
    """
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:  # noqa: PLR2004
        msg = f"expected a port number from 0 to 65535, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number
