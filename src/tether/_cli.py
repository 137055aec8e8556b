"""
The ``tether`` command line: sessions from the shell, remembered in a store.

Every command opens a :class:`~tether.SessionManager` that keeps what it creates
(``on_exit="keep"``) and runs no background pings, over a durable store, so a
session created by one invocation is there for the next.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import textwrap
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import anyio
import attrs

from tether._config import build_provider_config, env_var
from tether._redact import redact, redact_text
from tether._registry import default_registry
from tether._session import Session, SessionState
from tether.exceptions import (
    AdmissionError,
    AuthError,
    ConfigError,
    NotSupportedError,
    ProviderLoadError,
    ProviderNotFoundError,
    SessionNotFoundError,
    TetherError,
    TransientProviderError,
)


if TYPE_CHECKING:
    from tether._manager import SessionManager
    from tether._session import Health, Session
    from tether.abc import Store


EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_UNAVAILABLE: Final = 4
EXIT_UNSUPPORTED: Final = 5
EXIT_INTERRUPTED: Final = 130

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

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """
    Bad input to the command line itself (exit status 2).
    """


# -- parsing arguments ----------------------------------------------------------


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        msg = f"expected KEY=VALUE, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return key, value


def _param(text: str) -> tuple[str, Any]:
    """
    ``KEY=VALUE``; the value is read as JSON when it is valid JSON, else a string.
    """
    key, raw = _key_value(text)
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _duration(text: str) -> float:
    """
    Seconds, with an optional unit: ``90``, ``90s``, ``15m``, ``2h``, ``1d``.
    """
    match = _DURATION.match(text)
    if match is None:
        msg = f"expected a duration such as 90, 90s, 15m, 2h or 1d, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    seconds = float(match[1]) * _UNITS[match[2]]
    if not math.isfinite(seconds) or seconds <= 0:
        msg = f"a duration must be positive, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _state(text: str) -> SessionState:
    try:
        return SessionState(text.lower())
    except ValueError:
        known = ", ".join(s.value for s in SessionState)
        msg = f"unknown state {text!r} (known: {known})"
        raise argparse.ArgumentTypeError(msg) from None


# -- configuration ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Settings:
    """
    Where the CLI's configuration came from, resolved.
    """

    config_path: Path | None
    providers: Mapping[str, Mapping[str, Any]]
    store_url: str


def _xdg(variable: str, fallback: str, environ: Mapping[str, str]) -> Path:
    value = environ.get(variable)
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / fallback


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """
    ``$XDG_CONFIG_HOME/tether/config.toml``, by default ``~/.config/tether/config.toml``.
    """
    return _xdg("XDG_CONFIG_HOME", ".config", environ) / "tether" / "config.toml"


def default_store_url(environ: Mapping[str, str] = os.environ) -> str:
    """
    A SQLite file in ``$XDG_STATE_HOME/tether/`` (``~/.local/state/tether/``).
    """
    path = _xdg("XDG_STATE_HOME", ".local/state", environ) / "tether" / "sessions.db"
    return f"sqlite:///{path}"


def load_settings(
    config: str | None, store: str | None, environ: Mapping[str, str]
) -> Settings:
    """
    Read the config file and pick the store, by precedence.

    Raises:
        UsageError: An explicitly named config file is missing, or a file is invalid.
    """
    explicit = config or environ.get("TETHER_CONFIG")
    path: Path | None = (
        Path(explicit).expanduser() if explicit else default_config_path(environ)
    )
    data: dict[str, Any] = {}
    if path is not None and path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            msg = f"cannot read config file {path}: {exc}"
            raise UsageError(msg) from None
    elif explicit:
        msg = f"config file {path} does not exist"
        raise UsageError(msg)
    else:
        path = None
    unknown = sorted(set(data) - {"providers", "store"})
    if unknown:
        msg = (
            f"{path}: unknown setting(s) {', '.join(unknown)} (known: providers, store)"
        )
        raise UsageError(msg)
    tables = data.get("providers", {})
    if not isinstance(tables, dict) or not all(
        isinstance(v, dict) for v in tables.values()
    ):
        msg = f"{path}: [providers] must hold one [providers.<name>] table per provider"
        raise UsageError(msg)
    providers: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        # The environment wins over the file: leave out what it sets, and the
        # manager reads it from there.
        providers[name] = {
            k: v for k, v in table.items() if env_var(name, k) not in environ
        }
    file_store = data.get("store")
    if file_store is not None and not isinstance(file_store, str):
        msg = f"{path}: store must be a URL string"
        raise UsageError(msg)
    store_url = store or environ.get("TETHER_STORE") or file_store
    if not store_url:
        store_url = default_store_url(environ)
    return Settings(config_path=path, providers=providers, store_url=store_url)


def _open_store(url: str) -> Store:
    from tether.stores import open_store  # noqa: PLC0415

    if url.startswith("sqlite:///"):
        # Create the directory of the file (the default one does not exist yet).
        raw = url.removeprefix("sqlite:///").split("?", 1)[0]
        if raw:
            try:
                Path(raw).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                msg = f"cannot create the store's directory: {exc}"
                raise UsageError(msg) from None
    return open_store(url)


# -- output ------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(redact(value), indent=2, sort_keys=True, default=str))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    whole = round(abs(seconds))
    if whole < 60:  # noqa: PLR2004
        return f"{whole}s"
    if whole < 3600:  # noqa: PLR2004
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:  # noqa: PLR2004
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    return f"in {_ago(delta)}" if delta >= 0 else f"{_ago(delta)} ago"


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _session_json(session: Session) -> dict[str, Any]:
    return session.to_dict()


def _health_json(health: Health) -> dict[str, Any]:
    return {
        "status": health.status.value,
        "ok": health.ok,
        "raw_state": health.raw_state,
        "checked_at": health.checked_at.isoformat(),
        "latency": health.latency,
        "detail": health.detail,
        "expires_at": health.expires_at.isoformat() if health.expires_at else None,
        "data": dict(health.data),
    }


def _show_session(session: Session) -> None:
    now = datetime.now(UTC)
    fields: list[tuple[str, str]] = [
        ("id", session.id),
        ("provider", session.provider),
        ("state", session.state.value),
        ("remote id", session.remote_id or "-"),
        ("raw state", session.raw_state or "-"),
        (
            "created",
            f"{session.created_at.isoformat()} ({_when(session.created_at, now)})",
        ),
        ("updated", session.updated_at.isoformat()),
        (
            "expires",
            f"{session.expires_at.isoformat()} ({_when(session.expires_at, now)})"
            if session.expires_at
            else "-",
        ),
        ("lifetime", f"{session.lifetime:g}s" if session.lifetime else "-"),
        ("labels", _labels(session.labels)),
        ("params", json.dumps(redact(dict(session.params)), sort_keys=True)),
        ("data", json.dumps(redact(dict(session.data)), sort_keys=True, default=str)),
        ("credential", session.credential or "-"),
        ("error", redact_text(session.error) if session.error else "-"),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key + ':':<{width + 1}}  {value}")


# -- commands ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Context:
    args: argparse.Namespace
    settings: Settings

    @property
    def json(self) -> bool:
        return bool(self.args.json)


def _manager_options(ctx: _Context) -> dict[str, Any]:
    config = {k: dict(v) for k, v in ctx.settings.providers.items()}
    # A provider configured only by TETHER_<NAME>_* variables is configured
    # too: name it, so that reconcile visits it.
    for name in default_registry().names():
        prefix = env_var(name, "")
        if any(key.startswith(prefix) for key in os.environ):
            config.setdefault(name, {})
    return {
        "config": config,
        "on_exit": "keep",
        "health_checks": False,
    }


def _run(ctx: _Context, fn: Callable[[SessionManager], Awaitable[int]]) -> int:
    """
    Run *fn* with a manager over the store, on the chosen event loop.
    """
    from tether._manager import SessionManager  # noqa: PLC0415

    store = _open_store(ctx.settings.store_url)

    async def main() -> int:
        try:
            async with SessionManager(store=store, **_manager_options(ctx)) as manager:
                return await fn(manager)
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    return anyio.run(main, backend=ctx.args.backend)


async def _resolve(manager: SessionManager, ref: str) -> Session:
    """
    A session by id, or by a unique prefix of its id.
    """
    try:
        return await manager.get(ref)
    except SessionNotFoundError:
        if len(ref) < 4:  # noqa: PLR2004 -- short prefixes match too much
            raise
    matches = [s for s in await manager.list() if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        msg = f"tether tracks no session {ref}"
        raise SessionNotFoundError(msg, session_id=ref)
    msg = f"{ref!r} matches {len(matches)} sessions; give more of the id"
    raise UsageError(msg)


def _cmd_providers(ctx: _Context) -> int:
    registry = default_registry()
    rows = []
    worst = EXIT_OK
    for name in registry.names():
        try:
            cls = registry.load(name)
        except (ProviderLoadError, ProviderNotFoundError) as exc:
            cls = None
            load_error: str | None = _explain_load_error(exc)
        else:
            load_error = None
        info = next(i for i in registry.info() if i.name == name)
        config_error = None
        if cls is not None:
            try:
                build_provider_config(
                    cls.config_class,
                    name,
                    ctx.settings.providers.get(name),
                    os.environ,
                )
            except ConfigError as exc:
                config_error = redact_text(str(exc))
        if load_error:
            worst = max(worst, EXIT_UNAVAILABLE)
        rows.append((info, load_error, config_error))
    if ctx.json:
        _print_json(
            [
                {
                    "name": info.name,
                    "source": info.source,
                    "value": info.value,
                    "distribution": info.distribution,
                    "version": info.version,
                    "ok": load_error is None,
                    "error": load_error,
                    "configured": load_error is None and config_error is None,
                    "config_error": config_error,
                }
                for info, load_error, config_error in rows
            ]
        )
        return worst
    if not rows:
        print("no providers installed (pip install a tether-<name> distribution)")
        return EXIT_OK
    print(
        _table(
            ["NAME", "VERSION", "DISTRIBUTION", "STATUS", "CONFIG"],
            [
                [
                    info.name,
                    info.version or "-",
                    info.distribution or info.source,
                    "broken" if load_error else "ok",
                    "-" if load_error else ("missing" if config_error else "ok"),
                ]
                for info, load_error, config_error in rows
            ],
        )
    )
    problems = [
        (info, load_error, config_error)
        for info, load_error, config_error in rows
        if load_error or config_error
    ]
    for info, load_error, config_error in problems:
        print()
        print(f"{info.name}:")
        print(textwrap.indent(load_error or config_error or "", "  "))
    return worst


def _explain_load_error(exc: TetherError) -> str:
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


def _cmd_create(ctx: _Context) -> int:
    args = ctx.args

    async def create(manager: SessionManager) -> int:
        session = await manager.create(
            args.provider,
            labels=dict(args.label or []),
            lifetime=args.lifetime,
            **dict(args.param or []),
        )
        _show(ctx, session)
        return EXIT_OK

    return _run(ctx, create)


def _cmd_ls(ctx: _Context) -> int:
    args = ctx.args

    async def ls(manager: SessionManager) -> int:
        sessions = await manager.list(
            provider=args.provider,
            state=args.state or None,
            labels=dict(args.label or []) or None,
        )
        sessions.sort(key=lambda s: s.created_at)
        if ctx.json:
            _print_json([_session_json(s) for s in sessions])
            return EXIT_OK
        if not sessions:
            print("no sessions")
            return EXIT_OK
        now = datetime.now(UTC)
        print(
            _table(
                [
                    "ID",
                    "PROVIDER",
                    "STATE",
                    "REMOTE ID",
                    "CREATED",
                    "EXPIRES",
                    "LABELS",
                ],
                [
                    [
                        s.id,
                        s.provider,
                        s.state.value,
                        s.remote_id or "-",
                        _when(s.created_at, now),
                        _when(s.expires_at, now),
                        _labels(s.labels),
                    ]
                    for s in sessions
                ],
            )
        )
        return EXIT_OK

    return _run(ctx, ls)


def _show(ctx: _Context, session: Session) -> None:
    """
    One session, as JSON for scripts or as a field list for people.
    """
    if ctx.json:
        _print_json(_session_json(session))
    else:
        _show_session(session)


def _cmd_inspect(ctx: _Context) -> int:
    async def inspect(manager: SessionManager) -> int:
        session = await _resolve(manager, ctx.args.id)
        _show(ctx, session)
        return EXIT_OK

    return _run(ctx, inspect)


def _cmd_ping(ctx: _Context) -> int:
    async def ping(manager: SessionManager) -> int:
        session = await _resolve(manager, ctx.args.id)
        health = await manager.ping(session)
        after = await manager.get(session.id)
        if ctx.json:
            _print_json({**_health_json(health), "session": _session_json(after)})
        else:
            latency = f" in {health.latency * 1000:.0f} ms" if health.latency else ""
            raw = f" ({health.raw_state})" if health.raw_state else ""
            print(f"{after.id}: {health.status.value}{raw}{latency}")
            if health.detail:
                print(f"  {redact_text(health.detail)}")
            print(f"  state: {after.state.value}")
        return EXIT_OK if health.ok else EXIT_ERROR

    return _run(ctx, ping)


def _cmd_update(ctx: _Context) -> int:
    args = ctx.args
    if not args.param:
        msg = "nothing to update: give at least one --param KEY=VALUE"
        raise UsageError(msg)

    async def update(manager: SessionManager) -> int:
        session = await _resolve(manager, args.id)
        updated = await manager.update(session, **dict(args.param))
        _show(ctx, updated)
        return EXIT_OK

    return _run(ctx, update)


def _cmd_renew(ctx: _Context) -> int:
    async def renew(manager: SessionManager) -> int:
        session = await _resolve(manager, ctx.args.id)
        renewed = await manager.renew(session, lifetime=ctx.args.lifetime)
        _show(ctx, renewed)
        return EXIT_OK

    return _run(ctx, renew)


def _cmd_close(ctx: _Context) -> int:
    async def close(manager: SessionManager) -> int:
        session = await _resolve(manager, ctx.args.id)
        closed = await manager.close(session)
        if ctx.json:
            _print_json(_session_json(closed))
        else:
            print(f"{closed.id}: {closed.state.value}")
        return EXIT_OK

    return _run(ctx, close)


def _cmd_reconcile(ctx: _Context) -> int:
    args = ctx.args

    async def reconcile(manager: SessionManager) -> int:
        method = getattr(manager, "reconcile", None)
        if method is None:
            msg = (
                "this version of tether cannot reconcile yet "
                "(SessionManager.reconcile() is missing)"
            )
            raise NotSupportedError(msg, provider="*", operation="reconcile")
        options: dict[str, Any] = {"dry_run": args.dry_run}
        # Pass only what was given, so the manager's defaults stay its own.
        for name in ("provider", "orphans", "grace"):
            value = getattr(args, name)
            if value is not None:
                options[name] = value
        report = await method(**options)
        _show_report(report, json_output=ctx.json, dry_run=args.dry_run)
        return EXIT_OK

    return _run(ctx, reconcile)


def _plain(value: Any) -> Any:
    """
    A JSON-ready view of attrs classes, sessions, enums and containers.
    """
    if isinstance(value, SessionState):
        return value.value
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if attrs.has(type(value)):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _show_report(report: Any, *, json_output: bool, dry_run: bool) -> None:
    plain = _plain(report)
    actions = plain.get("actions") if isinstance(plain, Mapping) else None
    if json_output:
        if isinstance(plain, dict):
            plain.setdefault("dry_run", dry_run)
            if isinstance(actions, list):
                counts: dict[str, int] = {}
                for action in actions:
                    kind = str(action.get("kind"))
                    counts[kind] = counts.get(kind, 0) + 1
                plain["counts"] = counts
        _print_json(plain)
        return
    prefix = "dry run, nothing changed: " if dry_run else ""
    if not isinstance(actions, list):
        print(prefix + json.dumps(redact(plain), indent=2, default=str))
        return
    if not actions:
        print(f"{prefix}the store and the services agree")
        return
    print(
        _table(
            ["ACTION", "PROVIDER", "SESSION", "REMOTE ID", "DETAIL"],
            [
                [
                    str(a.get("kind", "-")),
                    str(a.get("provider", "-")),
                    str(a.get("session_id") or "-"),
                    str(a.get("remote_id") or "-"),
                    redact_text(str(a.get("detail") or "")),
                ]
                for a in actions
            ],
        )
    )
    kinds: dict[str, int] = {}
    for a in actions:
        kinds[str(a.get("kind"))] = kinds.get(str(a.get("kind")), 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{prefix}{summary}")


def _cmd_demo(ctx: _Context) -> int:
    from tether._demo import run_demo  # noqa: PLC0415

    return int(anyio.run(run_demo, ctx.args.backend, backend=ctx.args.backend))


# -- errors --------------------------------------------------------------------------


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
    if isinstance(exc, ProviderLoadError | TransientProviderError | AdmissionError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, NotSupportedError):
        return EXIT_UNSUPPORTED
    return EXIT_ERROR


def _report(exc: BaseException, code: int, *, json_output: bool) -> None:
    message = redact_text(str(exc)) or type(exc).__name__
    if isinstance(exc, ProviderLoadError):
        message = _explain_load_error(exc)
    if json_output:
        error = {"type": type(exc).__name__, "message": message, "exit_code": code}
        for key in ("provider", "session_id", "field", "operation", "status_code"):
            value = getattr(exc, key, None)
            if value is not None:
                error[key] = value
        print(json.dumps({"error": redact(error)}, sort_keys=True), file=sys.stderr)
    else:
        print(f"tether: error: {message}", file=sys.stderr)


def _configure_logging(verbosity: int, *, json_output: bool) -> None:
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


# -- the parser ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """
    The ``tether`` argument parser.
    """
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

    parser = _Parser(
        prog="tether",
        description="Keep remote sessions alive and honest: create, inspect, "
        "ping, update and close sessions on any installed provider.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Callable[[_Context], int]) -> Any:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    add(
        "providers",
        "list installed providers, their versions, load and config problems",
        _cmd_providers,
    )

    p = add("create", "create a session and keep it", _cmd_create)
    p.add_argument("provider", help="provider name (see 'tether providers')")
    p.add_argument(
        "-p",
        "--param",
        metavar="KEY=VALUE",
        type=_param,
        action="append",
        help="a provider parameter; VALUE is read as JSON when it is JSON "
        "(2, true, [1,2], '\"quoted\"'), else taken as a string. Repeatable",
    )
    p.add_argument(
        "-l",
        "--label",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        help="a label, for 'tether ls --label'. Repeatable",
    )
    p.add_argument(
        "--lifetime",
        metavar="DURATION",
        type=_duration,
        help="how long the session lives: 90, 90s, 15m, 2h, 1d",
    )

    p = add("ls", "list recorded sessions", _cmd_ls)
    p.add_argument("--provider", help="only this provider's sessions")
    p.add_argument(
        "--state",
        type=_state,
        action="append",
        help="only sessions in this state (repeatable): "
        + ", ".join(s.value for s in SessionState),
    )
    p.add_argument(
        "-l",
        "--label",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        help="only sessions with this label (repeatable: all must match)",
    )

    for name, help_text, func in (
        ("inspect", "show everything recorded about a session", _cmd_inspect),
        ("ping", "ask the service how a session is (exit 1 if not alive)", _cmd_ping),
        ("close", "close a session on its service", _cmd_close),
    ):
        p = add(name, help_text, func)
        p.add_argument("id", help="session id (or a unique prefix of 4+ characters)")

    p = add("update", "change a session in place", _cmd_update)
    p.add_argument("id", help="session id (or a unique prefix of 4+ characters)")
    p.add_argument(
        "-p",
        "--param",
        metavar="KEY=VALUE",
        type=_param,
        action="append",
        help="a change; VALUE is read as JSON when it is JSON. Repeatable",
    )

    p = add("renew", "extend a session's lifetime", _cmd_renew)
    p.add_argument("id", help="session id (or a unique prefix of 4+ characters)")
    p.add_argument(
        "--lifetime",
        metavar="DURATION",
        type=_duration,
        help="from now (default: the session's own lifetime)",
    )

    for name in ("reconcile", "sweep"):
        p = add(
            name,
            "compare the store with the services: adopt, close or forget "
            "what disagrees",
            _cmd_reconcile,
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="report what would change, change nothing",
        )
        p.add_argument("--provider", help="only this provider")
        p.add_argument(
            "--orphans",
            choices=["close", "adopt", "report"],
            help="what to do with remote sessions tagged by tether that the "
            "store does not hold live (default: close)",
        )
        p.add_argument(
            "--grace",
            metavar="DURATION",
            type=_duration,
            help="leave creates younger than this alone (default: 5m)",
        )

    add(
        "demo",
        "run sessions on every first-party provider's emulator",
        _cmd_demo,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``tether`` command; return its exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (
        ("json", False),
        ("config", None),
        ("store", None),
        ("backend", "asyncio"),
        ("verbose", 0),
    ):
        if not hasattr(args, name):
            setattr(args, name, default)
    _configure_logging(args.verbose, json_output=args.json)
    try:
        settings = load_settings(args.config, args.store, os.environ)
        ctx = _Context(args=args, settings=settings)
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
        exc = _unwrap(raised)
        if not isinstance(exc, TetherError | UsageError):
            raise
        code = exit_code_for(exc)
        _report(exc, code, json_output=args.json)
        return code


def _unwrap(exc: BaseException) -> BaseException:
    """
    The one error inside (nested) exception groups of one error each.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
