"""
Create parameters of local sessions, validated before anything starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tether.exceptions import InvalidParameterError


__all__ = ["ISOLATIONS", "parse_create", "parse_execute"]

#: How a session can be isolated: bubblewrap, or not at all.
ISOLATIONS: Final = ("bwrap", "none")
_SHELLS: Final = frozenset({"bash", "sh", "shell"})

# Each limit: its default, lowest and highest value.
_LIMITS: Final[Mapping[str, tuple[int, int, int]]] = {
    "memory_mb": (1024, 64, 1024 * 1024),
    "processes": (256, 16, 65536),
    "open_files": (1024, 64, 1048576),
}


def _fail(field: str, value: object, allowed: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"local: {field} must be {allowed}, not {value!r}",
        field=field,
        value=value,
        allowed=allowed,
        provider="local",
    )


def _whole(field: str, value: object, lo: int, hi: int) -> int:
    allowed = f"a whole number from {lo} to {hi}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, value, allowed)
    if isinstance(value, float) and not value.is_integer():
        raise _fail(field, value, allowed)
    if not lo <= value <= hi:
        raise _fail(field, value, allowed)
    return int(value)


def parse_create(params: Mapping[str, Any]) -> dict[str, Any]:
    """
    The normalised create parameters; :class:`InvalidParameterError` otherwise.

    ``memory_mb`` (the session's memory cap, and each process's data limit),
    ``processes`` (tasks in the sandbox), ``open_files`` (per process), ``network`` (``False``: no
    network), ``isolation`` (``"bwrap"`` or ``"none"``).
    """
    known = {*_LIMITS, "network", "isolation"}
    for field in params:
        if field not in known:
            msg = f"local takes no parameter {field!r}; it takes {', '.join(sorted(known))}"
            raise InvalidParameterError(
                msg, field=field, allowed=", ".join(sorted(known)), provider="local"
            )
    parsed: dict[str, Any] = {}
    for field, (default, lo, hi) in _LIMITS.items():
        parsed[field] = _whole(field, params.get(field, default), lo, hi)
    network = params.get("network", False)
    if not isinstance(network, bool):
        raise _fail("network", network, "True or False")
    parsed["network"] = network
    isolation = params.get("isolation", "bwrap")
    if isolation not in ISOLATIONS:
        raise _fail("isolation", isolation, "'bwrap' or 'none'")
    parsed["isolation"] = isolation
    return parsed


def parse_execute(
    code: str | None, command: str | None, language: str, exec_timeout: float
) -> tuple[str, bool, float]:
    """
    ``(source, is_shell, timeout)`` of one execution, or InvalidParameterError.
    """
    if isinstance(exec_timeout, bool) or not isinstance(exec_timeout, int | float):
        raise _fail("exec_timeout", exec_timeout, "a number of seconds")
    if not 0 < exec_timeout <= 86400:  # noqa: PLR2004
        raise _fail("exec_timeout", exec_timeout, "more than 0 and at most 86400")
    if language != "python" and language not in _SHELLS:
        raise _fail("language", language, "'python' or 'bash'")
    if (code is None) == (command is None):
        msg = "local: give either code or command, not both or neither"
        raise InvalidParameterError(msg, field="code", provider="local")
    source = command if command is not None else code
    if not isinstance(source, str):
        raise _fail("code", source, "a string")
    return source, command is not None or language in _SHELLS, float(exec_timeout)
