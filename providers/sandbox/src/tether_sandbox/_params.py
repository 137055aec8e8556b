"""
Local validation of everything the sandbox provider sends, before any request.

The service's JSON schema has no bounds; its documented limits are checked
here so bad input never reaches the network and the error names the field
and what is allowed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from tether.exceptions import InvalidParameterError


__all__ = [
    "CREATE_FIELDS",
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "MIN_LIFETIME",
    "TETHER_ID_KEY",
    "check_lifetime",
    "check_whole",
    "parse_create",
]

PROVIDER: Final = "sandbox"
MIN_LIFETIME: Final = 20
MAX_LIFETIME: Final = 86_400
DEFAULT_LIFETIME: Final = 300
MIN_MEMORY: Final = 128
MAX_MEMORY: Final = 8192
VCPU_COUNTS: Final = (1, 2, 4, 6, 8)
MIN_EXEC_TIMEOUT: Final = 1
MAX_EXEC_TIMEOUT: Final = 600
MAX_LIST_LIMIT: Final = 1000
#: The metadata key that carries tether's id on every session.
TETHER_ID_KEY: Final = "tether_id"
#: The metadata key that carries the session's tether labels.
TETHER_LABELS_KEY: Final = "tether_labels"
CREATE_FIELDS: Final = (
    "vm_lifetime_seconds",
    "memory_mb",
    "vcpu_count",
    "metadata",
    "env",
)


def _invalid(
    field: str, value: object, allowed: str, why: str
) -> InvalidParameterError:
    return InvalidParameterError(
        f"sandbox: {field} {why}; allowed: {allowed}",
        field=field,
        value=value,
        allowed=allowed,
        provider=PROVIDER,
    )


def _whole(field: str, value: object, allowed: str) -> int:
    """
    The one rule for every whole-number field: an int, or an integral float
    (``512.0`` is 512), never a bool or a fraction.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(
            field,
            value,
            allowed,
            f"must be a whole number, not {type(value).__name__}",
        )
    if isinstance(value, float) and (
        not math.isfinite(value) or not value.is_integer()
    ):
        raise _invalid(field, value, allowed, f"must be a whole number, not {value!r}")
    return int(value)


def check_whole(field: str, value: object, lo: int, hi: int) -> int:
    """
    A whole number in ``lo..hi`` (integral floats accepted), or raise.
    """
    allowed = f"a whole number from {lo} to {hi}"
    number = _whole(field, value, allowed)
    if not lo <= number <= hi:
        raise _invalid(field, value, allowed, f"is out of range ({number})")
    return number


def check_lifetime(field: str, value: object) -> int:
    """
    A VM lifetime in seconds: whole, 20..86400.
    """
    return check_whole(field, value, MIN_LIFETIME, MAX_LIFETIME)


def _check_json(field: str, value: object) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _invalid(field, value, "JSON values", f"is not JSON ({exc})") from None


def _check_metadata(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _invalid(
            "metadata",
            value,
            "a mapping of string keys to JSON values",
            "is not a mapping",
        )
    for reserved in (TETHER_ID_KEY, TETHER_LABELS_KEY):
        if reserved in value:
            raise _invalid(
                "metadata",
                reserved,
                f"any key but {TETHER_ID_KEY!r} and {TETHER_LABELS_KEY!r}",
                f"uses the key {reserved!r}, which tether sets itself",
            )
    _check_json("metadata", dict(value))
    result: dict[str, Any] = json.loads(json.dumps(dict(value)))
    return result


def _check_env(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        # The values may be secrets: never put them in the error.
        raise _invalid(
            "env",
            None,
            "a mapping of non-empty string names to string values",
            "is not a mapping of strings",
        )
    return dict(value)


def _check_vcpus(value: object) -> int:
    allowed = "a whole number: 1, 2, 4, 6 or 8"
    number = _whole("vcpu_count", value, allowed)
    if number not in VCPU_COUNTS:
        raise _invalid("vcpu_count", value, allowed, f"cannot be {value!r}")
    return number


def parse_create(params: Mapping[str, Any]) -> dict[str, Any]:
    """
    Validate and normalise create parameters (see :data:`CREATE_FIELDS`).
    """
    for field in params:
        if field not in CREATE_FIELDS:
            raise _invalid(
                field,
                params[field],
                ", ".join(CREATE_FIELDS),
                "is not a parameter of sandbox sessions",
            )
    checks: dict[str, Any] = {
        "vm_lifetime_seconds": lambda v: check_lifetime("vm_lifetime_seconds", v),
        "memory_mb": lambda v: check_whole("memory_mb", v, MIN_MEMORY, MAX_MEMORY),
        "vcpu_count": _check_vcpus,
        "metadata": _check_metadata,
        "env": _check_env,
    }
    return {
        field: check(params[field])
        for field, check in checks.items()
        if params.get(field) is not None
    }
