"""
Exit statuses, and how an error becomes one (and a message on stderr).
"""

from __future__ import annotations

import json
import sys
from typing import Final

from tether._redact import redact, redact_text
from tether.exceptions import (
    AdmissionError,
    AuthError,
    ConfigError,
    NotSupportedError,
    ProviderLoadError,
    ProviderNotFoundError,
    SessionNotFoundError,
    StoreUnavailableError,
    TetherError,
    TransientProviderError,
)


EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_UNAVAILABLE: Final = 4
EXIT_UNSUPPORTED: Final = 5
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """
    Bad input to the command line itself (exit status 2).
    """


def exit_code_for(exc: BaseException) -> int:
    """
    The exit status that tells a script what kind of failure *exc* is.
    """
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, SessionNotFoundError | ProviderNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConfigError | AuthError):
        return EXIT_USAGE
    if isinstance(
        exc,
        ProviderLoadError
        | TransientProviderError
        | AdmissionError
        | StoreUnavailableError,
    ):
        return EXIT_UNAVAILABLE
    if isinstance(exc, NotSupportedError):
        return EXIT_UNSUPPORTED
    return EXIT_ERROR


def explain_load_error(exc: TetherError) -> str:
    """
    What broke, from which distribution, why, and what to do.
    """
    lines = [redact_text(str(exc))]
    distributions = getattr(exc, "distributions", ()) or ()
    cause = exc.__cause__
    if len(distributions) > 1:
        lines.append(
            "fix: uninstall all but one of " + ", ".join(sorted(distributions))
        )
    elif cause is not None:
        lines.append(f"cause: {type(cause).__name__}: {redact_text(str(cause))}")
        if distributions:
            dist = distributions[0]
            if isinstance(cause, ImportError):
                lines.append(
                    f"fix: reinstall {dist} and its dependencies "
                    f"(pip install --force-reinstall {dist})"
                )
            else:
                lines.append(f"fix: report it to the authors of {dist}")
    elif distributions:
        lines.append(f"fix: upgrade {distributions[0]} to one made for this tether")
    return "\n".join(lines)


def report(exc: BaseException, code: int, *, json_output: bool) -> None:
    """
    Say on stderr what went wrong: a line for people, a JSON object for scripts.
    """
    message = redact_text(str(exc)) or type(exc).__name__
    if isinstance(exc, ProviderLoadError):
        message = explain_load_error(exc)
    if json_output:
        error = {"type": type(exc).__name__, "message": message, "exit_code": code}
        for key in ("provider", "session_id", "field", "operation", "status_code"):
            value = getattr(exc, key, None)
            if value is not None:
                error[key] = value
        print(json.dumps({"error": redact(error)}, sort_keys=True), file=sys.stderr)
    else:
        print(f"tether: error: {message}", file=sys.stderr)


def unwrap(exc: BaseException) -> BaseException:
    """
    The one error inside (nested) exception groups of one error each.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
