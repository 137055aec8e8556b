"""
The ``tether`` parser, its global options, and the dispatch to a command.

Each command group lives in its own module and adds its sub-commands through
``register(add)``; :func:`main` parses, configures logging, runs the command
and turns errors into exit statuses.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Final, NoReturn

from tether._cli import _demo, _emulate, _pools, _providers, _reconcile, _sessions
from tether._cli._context import Command, Context
from tether._cli._errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UsageError,
    exit_code_for,
    report,
    unwrap,
)
from tether._cli._settings import load_settings
from tether.exceptions import TetherError


EPILOG: Final = """\
exit status:
  0    success
  1    the operation failed (the service refused it, or a ping found the
       session not alive)
  2    usage or configuration error: bad arguments or parameters, an invalid
       or missing config file, missing or rejected credentials
  3    not found: no such session or provider
  4    provider unavailable: a plugin that does not load, the service
       unreachable or failing, a circuit breaker open, a session limit reached
  5    not supported by the provider (or by this version of tether)
  130  interrupted

configuration:
  config file  --config PATH, $TETHER_CONFIG, or
               $XDG_CONFIG_HOME/tether/config.toml (~/.config/tether/config.toml);
               a [providers.<name>] table per provider, and an optional
               top-level store = "URL"
  store        --store URL, $TETHER_STORE, the file's store, or
               sqlite:///$XDG_STATE_HOME/tether/sessions.db
               (~/.local/state/tether/sessions.db)
  credentials  TETHER_<PROVIDER>_<FIELD> environment variables, e.g.
               TETHER_SANDBOX_API_KEY; they override the config file and are
               never printed
"""

# The global options, and what they are when not given.
_DEFAULTS: Final = (
    ("json", False),
    ("config", None),
    ("store", None),
    ("backend", "asyncio"),
    ("verbose", 0),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return version("tether")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _global_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("global options")
    # SUPPRESS: a global option given before the command is not reset by the
    # sub-parser's default.
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output on stdout (errors as JSON on stderr)",
    )
    group.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="TOML config file (default: ~/.config/tether/config.toml)",
    )
    group.add_argument(
        "--store",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="session store URL (default: SQLite in ~/.local/state/tether/)",
    )
    group.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default=argparse.SUPPRESS,
        help="event loop to run on (default: asyncio)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log more (-v: info, -vv: debug), on stderr",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """
    The ``tether`` argument parser.
    """
    common = _global_options()
    parser = _Parser(
        prog="tether",
        description="Keep remote sessions alive and honest: create, inspect, "
        "ping, update and close sessions on any installed provider.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tether {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help_text: str, func: Command, *, add_help: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=add_help,
        )
        p.set_defaults(func=func)
        return p

    for group in (_providers, _sessions, _pools, _reconcile, _emulate, _demo):
        group.register(add)
    return parser


def configure_logging(verbosity: int, *, json_output: bool) -> None:
    """
    Log to stderr (stdout is for results), quiet unless asked; JSON lines with --json.
    """
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    from tether._redact import redact_secrets  # noqa: PLC0415

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    # The command line is an application: configuring structlog is its call.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.JSONRenderer(sort_keys=True, default=str)
            if json_output
            else structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _importable(module: str) -> bool:
    """
    Whether *module* can be imported, without importing it.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:
        # A module whose entry in sys.modules is None is blocked from import.
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``tether`` command; return its exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in _DEFAULTS:
        if not hasattr(args, name):
            setattr(args, name, default)
    configure_logging(args.verbose, json_output=args.json)
    if args.backend != "asyncio" and not _importable(args.backend):
        missing = UsageError(
            f"--backend {args.backend} needs {args.backend}, which is not "
            f"installed: pip install {args.backend}"
        )
        report(missing, EXIT_UNAVAILABLE, json_output=args.json)
        return EXIT_UNAVAILABLE
    try:
        settings = load_settings(args.config, args.store, os.environ)
        ctx = Context(args=args, settings=settings)
        return int(args.func(ctx))
    except KeyboardInterrupt:
        print("tether: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``tether ls | head``): say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except (TetherError, UsageError, BaseExceptionGroup) as raised:
        exc = unwrap(raised)
        if not isinstance(exc, TetherError | UsageError):
            raise
        code = exit_code_for(exc)
        report(exc, code, json_output=args.json)
        return code
