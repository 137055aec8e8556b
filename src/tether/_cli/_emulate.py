"""
``tether emulate NAME``: serve a provider's emulator for clients in other processes.

The emulator comes from the ``tether.emulators`` entry points (see
:class:`tether.testing.Emulator`); uvicorn (``pip install 'tether[emulator]'``)
serves it, on asyncio, until SIGINT or SIGTERM.
"""

from __future__ import annotations

import json
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from tether._cli import _args
from tether._cli._context import AddCommand, Context
from tether._cli._errors import EXIT_OK, EXIT_UNAVAILABLE, UsageError, report
from tether._config import env_var
from tether._emulators import build_emulator, emulator_names
from tether.exceptions import ProviderNotFoundError


if TYPE_CHECKING:
    from types import FrameType

    import uvicorn

    from tether.testing import Emulator


DEFAULT_PORT: Final = 8787
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def register(add: AddCommand) -> None:
    """
    Add ``emulate`` to the parser.
    """
    p = add(
        "emulate",
        "serve a provider's local emulator until interrupted (uvicorn, on asyncio)",
        _emulate,
    )
    p.add_argument("name", help="the provider whose emulator to serve")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--port",
        type=_args.port,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )


def _emulate(ctx: Context) -> int:
    args = ctx.args
    try:
        import uvicorn  # noqa: PLC0415
    except ImportError:
        missing = UsageError(
            "tether emulate needs uvicorn: pip install 'tether[emulator]'"
        )
        report(missing, EXIT_UNAVAILABLE, json_output=ctx.json)
        return EXIT_UNAVAILABLE
    try:
        emulator = build_emulator(args.name)
    except ProviderNotFoundError:
        known = emulator_names()
        installed = ", ".join(known) if known else "none"
        msg = f"no emulator named {args.name!r} (installed: {installed})"
        raise UsageError(msg) from None
    sock = _listen(args.host, args.port)
    url = _url(sock)
    config = uvicorn.Config(
        emulator.app,
        interface="asgi3",
        lifespan="off",
        log_level="info" if args.verbose else "warning",
        access_log=args.verbose > 1,
    )
    server = uvicorn.Server(config)
    with _quiet_stop(server) as stopped_by:
        # Announced once a signal stops the server cleanly, not before.
        _announce(args.name, url, emulator, json_output=ctx.json)
        server.run(sockets=[sock])
    sock.close()
    if stopped_by and not ctx.json:
        print(f"tether: {args.name} emulator stopped", file=sys.stderr)
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    """
    A listening socket, so the URL is known (and connectable) before serving.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        msg = f"cannot listen on {host}:{port}: {exc}"
        raise UsageError(msg) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        msg = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise UsageError(msg) from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _announce(name: str, url: str, emulator: Emulator, *, json_output: bool) -> None:
    """
    One line: where the emulator is, and the demo configuration a client needs.

    The values are the emulator's demo credentials, fakes that only it accepts,
    so they are printed as they are.
    """
    config: dict[str, Any] = emulator.provider_config(url)
    env = {env_var(name, key): str(value) for key, value in sorted(config.items())}
    if json_output:
        line = {"name": name, "url": url, "config": config, "env": env}
        print(json.dumps(line, sort_keys=True, default=str), flush=True)
        return
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    print(
        f"{name} emulator on {url} (Ctrl-C to stop); "
        f"demo keys, fakes only the emulator accepts: {assignments}",
        flush=True,
    )


@contextmanager
def _quiet_stop(server: uvicorn.Server) -> Iterator[list[int]]:
    """
    Make SIGINT and SIGTERM a clean stop, with exit status 0.

    While uvicorn serves, it catches them and shuts down gracefully, then raises
    each again for the handler it found: these handlers, which record the
    signal and return. A signal that comes before uvicorn listens for them
    stops the server before it starts.
    """
    stopped_by: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        yield stopped_by
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
