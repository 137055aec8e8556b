"""
The session commands: create, ls, inspect, ping, update, renew, close.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tether._cli import _args, _output
from tether._cli._context import AddCommand, Context, resolve, run
from tether._cli._errors import EXIT_ERROR, EXIT_OK, UsageError
from tether._cli._params import provider_parameters
from tether._redact import redact_text
from tether._registry import default_registry
from tether._session import SessionState
from tether.exceptions import TetherError


if TYPE_CHECKING:
    from tether._manager import SessionManager

_ID_HELP = "session id (or a unique prefix of 4+ characters)"


def register(add: AddCommand) -> None:
    """
    Add the session commands to the parser.
    """
    p = add("create", "create a session and keep it", _create, add_help=False)
    p.add_argument(
        "-h",
        "--help",
        action=_CreateHelp,
        help="show this help and exit; after a provider name, list its parameters",
    )
    p.add_argument("provider", help="provider name (see 'tether providers')")
    p.add_argument(
        "-p",
        "--param",
        metavar="KEY=VALUE",
        type=_args.param,
        action="append",
        help="a provider parameter; VALUE is read as JSON when it is JSON "
        "(2, true, [1,2], '\"quoted\"'), else taken as a string. Repeatable",
    )
    p.add_argument(
        "-l",
        "--label",
        metavar="KEY=VALUE",
        type=_args.key_value,
        action="append",
        help="a label, for 'tether ls --label'. Repeatable",
    )
    p.add_argument(
        "--lifetime",
        metavar="DURATION",
        type=_args.duration,
        help="how long the session lives: 90, 90s, 15m, 2h, 1d",
    )

    p = add("ls", "list recorded sessions", _ls)
    p.add_argument("--provider", help="only this provider's sessions")
    p.add_argument(
        "--state",
        type=_args.state,
        action="append",
        help="only sessions in this state (repeatable): "
        + ", ".join(s.value for s in SessionState),
    )
    p.add_argument(
        "-l",
        "--label",
        metavar="KEY=VALUE",
        type=_args.key_value,
        action="append",
        help="only sessions with this label (repeatable: all must match)",
    )

    for name, help_text, func in (
        ("inspect", "show everything recorded about a session", _inspect),
        ("ping", "ask the service how a session is (exit 1 if not alive)", _ping),
        ("close", "close a session on its service", _close),
    ):
        p = add(name, help_text, func)
        p.add_argument("id", help=_ID_HELP)

    p = add("update", "change a session in place", _update)
    p.add_argument("id", help=_ID_HELP)
    p.add_argument(
        "-p",
        "--param",
        metavar="KEY=VALUE",
        type=_args.param,
        action="append",
        help="a change; VALUE is read as JSON when it is JSON. Repeatable",
    )

    p = add("renew", "extend a session's lifetime", _renew)
    p.add_argument("id", help=_ID_HELP)
    p.add_argument(
        "--lifetime",
        metavar="DURATION",
        type=_args.duration,
        help="from now (default: the session's own lifetime)",
    )


class _CreateHelp(argparse.Action):
    """
    ``-h``: the command's help, then the parameters of the provider named
    before it (``tether create sandbox --help``).
    """

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:  # noqa: A002 -- argparse's own keyword
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        text = parser.format_help()
        name = getattr(namespace, "provider", None)
        if name is not None:
            text = text.replace(
                "\nexit status:", f"\n{_parameters(name)}\nexit status:", 1
            )
        print(text, end="")
        parser.exit()


def _parameters(name: str) -> str:
    """
    The help's section on *name*'s create parameters, as its own validation
    names them.
    """
    try:
        cls = default_registry().load(name)
    except TetherError as exc:
        return f"parameters of {name}: unknown ({redact_text(str(exc))})\n"
    allowed = provider_parameters(cls, name)
    if not allowed:
        return f"parameters of {name}: it does not list them\n"
    lines = [f"parameters of {name} (-p KEY=VALUE):"]
    lines += [
        f"  {param}"
        + ("  (secret: kept out of the store)" if param in cls.secret_params else "")
        for param in allowed
    ]
    return "\n".join(lines) + "\n"


def _create(ctx: Context) -> int:
    args = ctx.args

    async def create(manager: SessionManager) -> int:
        with _output.waiting(
            f"creating a {args.provider} session", json_output=ctx.json
        ):
            session = await manager.create(
                args.provider,
                labels=dict(args.label or []),
                lifetime=args.lifetime,
                **dict(args.param or []),
            )
        _output.show(session, json_output=ctx.json)
        return EXIT_OK

    return run(ctx, create)


def _ls(ctx: Context) -> int:
    args = ctx.args

    async def ls(manager: SessionManager) -> int:
        sessions = await manager.list(
            provider=args.provider,
            state=args.state or None,
            labels=dict(args.label or []) or None,
        )
        sessions.sort(key=lambda s: s.created_at)
        if ctx.json:
            _output.print_json([_output.session_json(s) for s in sessions])
            return EXIT_OK
        if not sessions:
            print("no sessions")
            return EXIT_OK
        now = datetime.now(UTC)
        _output.print_table(
            ["ID", "PROVIDER", "STATE", "REMOTE ID", "CREATED", "EXPIRES", "LABELS"],
            [
                [
                    s.id,
                    s.provider,
                    s.state.value,
                    s.remote_id or "-",
                    _output.when(s.created_at, now),
                    _output.when(s.expires_at, now),
                    _output.labels(s.labels),
                ]
                for s in sessions
            ],
            coloured=[2],
        )
        return EXIT_OK

    return run(ctx, ls)


def _inspect(ctx: Context) -> int:
    async def inspect(manager: SessionManager) -> int:
        session = await resolve(manager, ctx.args.id)
        _output.show(session, json_output=ctx.json)
        return EXIT_OK

    return run(ctx, inspect)


def _ping(ctx: Context) -> int:
    async def ping(manager: SessionManager) -> int:
        session = await resolve(manager, ctx.args.id)
        health = await manager.ping(session)
        after = await manager.get(session.id)
        if ctx.json:
            _output.print_json(
                {**_output.health_json(health), "session": _output.session_json(after)}
            )
        else:
            latency = f" in {health.latency * 1000:.0f} ms" if health.latency else ""
            raw = f" ({health.raw_state})" if health.raw_state else ""
            print(f"{after.id}: {health.status.value}{raw}{latency}")
            if health.detail:
                print(f"  {redact_text(health.detail)}")
            print(f"  state: {after.state.value}")
        return EXIT_OK if health.ok else EXIT_ERROR

    return run(ctx, ping)


def _update(ctx: Context) -> int:
    args = ctx.args
    if not args.param:
        msg = "nothing to update: give at least one --param KEY=VALUE"
        raise UsageError(msg)

    async def update(manager: SessionManager) -> int:
        session = await resolve(manager, args.id)
        updated = await manager.update(session, **dict(args.param))
        _output.show(updated, json_output=ctx.json)
        return EXIT_OK

    return run(ctx, update)


def _renew(ctx: Context) -> int:
    async def renew(manager: SessionManager) -> int:
        session = await resolve(manager, ctx.args.id)
        renewed = await manager.renew(session, lifetime=ctx.args.lifetime)
        _output.show(renewed, json_output=ctx.json)
        return EXIT_OK

    return run(ctx, renew)


def _close(ctx: Context) -> int:
    async def close(manager: SessionManager) -> int:
        session = await resolve(manager, ctx.args.id)
        closed = await manager.close(session)
        if ctx.json:
            _output.print_json(_output.session_json(closed))
        else:
            print(f"{closed.id}: {closed.state.value}")
        return EXIT_OK

    return run(ctx, close)
