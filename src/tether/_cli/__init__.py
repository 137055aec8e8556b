"""
The ``tether`` command line: sessions from the shell, remembered in a store.

One module per command group: ``_sessions`` (create, ls, inspect, ping,
update, renew, close), ``_providers``, ``_reconcile``, ``_emulate``, ``_demo``;
``_app`` builds the parser and dispatches, ``_output`` prints.
"""

from tether._cli._app import EPILOG, build_parser, configure_logging, main
from tether._cli._errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    UsageError,
    exit_code_for,
)
from tether._cli._output import ago as _ago
from tether._cli._settings import (
    Settings,
    default_config_path,
    default_store_url,
    load_settings,
)


__all__ = [
    "EPILOG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "Settings",
    "UsageError",
    "_ago",
    "build_parser",
    "configure_logging",
    "default_config_path",
    "default_store_url",
    "exit_code_for",
    "load_settings",
    "main",
]
