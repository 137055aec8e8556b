"""
``tether demo``: a session on every installed provider, on its local emulator.

Providers and their emulators are found the way users find them: through the
installed ``tether.providers`` and ``tether.emulators`` entry points, so a
third-party provider that publishes an emulator takes part as the first-party
ones do. Each emulator is served on a loopback port in this process; nothing
leaves the machine. A provider that runs for real on this machine (``local``)
needs no emulator: it publishes its script in ``tether.demos`` instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import structlog

from tether._cli._context import AddCommand, Context
from tether._cli._errors import EXIT_ERROR, EXIT_OK
from tether._config import HealthPolicy, RetryPolicy
from tether._emulators import build_demo, build_emulator, demo_names, emulator_names
from tether._events import Event, EventKind
from tether._registry import ProviderRegistry
from tether.exceptions import ProviderLoadError, ProviderNotFoundError
from tether.testing._asgi import serve_asgi
from tether.testing._emulation import DemoScript


if TYPE_CHECKING:
    from tether._manager import SessionManager


def register(add: AddCommand) -> None:
    """
    Add ``demo`` to the parser.
    """
    p = add(
        "demo",
        "run sessions on every installed provider's emulator",
        _demo,
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="only these providers (default: every one with an emulator)",
    )


def _demo(ctx: Context) -> int:
    names = list(ctx.args.names) or None
    return int(anyio.run(run_demo, ctx.args.backend, names, backend=ctx.args.backend))


def _say(message: str) -> None:
    print(message, flush=True)


@attrs.frozen(kw_only=True)
class _Target:
    name: str
    script: DemoScript


@attrs.frozen
class _Skipped:
    reason: str


def _missing(exc: Exception) -> ImportError | None:
    """
    The missing module behind a provider or emulator that did not load, if that
    is why.
    """
    cause = exc.__cause__
    return cause if isinstance(cause, ImportError) else None


async def _start(
    stack: contextlib.AsyncExitStack,
    registry: ProviderRegistry,
    name: str,
    *,
    chosen: bool,
) -> tuple[_Target, dict[str, Any]] | _Skipped | None:
    """
    Serve *name*'s emulator; the demo target and the provider's config, or
    ``None`` when it fails.

    An emulator whose dependencies are not installed (its provider's
    ``emulator`` extra) is skipped instead, unless it was asked for by name.
    """
    try:
        registry.load(name)
        if name not in emulator_names() and name in demo_names():
            # It runs for real, here: nothing to serve.
            return _Target(name=name, script=build_demo(name)), {}
        emulator = build_emulator(name)
    except (ProviderNotFoundError, ProviderLoadError) as exc:
        missing = _missing(exc)
        if not chosen and missing is not None:
            dists = getattr(exc, "distributions", ()) or (f"tether-{name}",)
            return _Skipped(f"{missing} (pip install '{dists[0]}[emulator]')")
        _say(f"[{name}] not available: {exc}")
        return None
    if emulator.demo is None:
        _say(f"[{name}] its emulator has no demo script: skipped")
        return None
    server = await stack.enter_async_context(serve_asgi(emulator.app))
    return (
        _Target(name=name, script=emulator.demo),
        emulator.provider_config(server.url),
    )


async def run_demo(backend: str, names: list[str] | None = None) -> int:
    """
    Start the emulators, run a session on each provider, and any failovers.
    """
    _quiet_logs()
    found = names or sorted({*emulator_names(), *demo_names()})
    _say(
        f"tether demo on {backend}: {len(found)} "
        f"{'provider' if len(found) == 1 else 'providers'}, on local emulators "
        "or on this machine"
    )
    if not found:
        _say("no emulators installed (pip install 'tether-<name>[emulator]')")
        return EXIT_ERROR
    chosen = names is not None
    names = found
    registry = ProviderRegistry()
    failures = 0
    skipped: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        targets, config = [], {}
        for name in names:
            started = await _start(stack, registry, name, chosen=chosen)
            if isinstance(started, _Skipped):
                _say(f"[{name}] skipped: not installed: {started.reason}")
                skipped.append(name)
                continue
            if started is None:
                failures += 1
                continue
            targets.append(started[0])
            config[name] = started[1]
        if not targets and not failures:
            _say("no emulator could be started: nothing to demo")
            return EXIT_ERROR
        manager = await stack.enter_async_context(
            _manager(registry=registry, config=config)
        )
        counts: dict[EventKind, int] = {}
        await stack.enter_async_context(_event_printer(manager, counts))
        for target in targets:
            await _run_target(manager, target)
        await anyio.sleep(0.1)
        _say(
            f"sessions created: {counts.get(EventKind.CREATED, 0)}, "
            f"health pings: {counts.get(EventKind.PINGED, 0)}, "
            f"failovers: {counts.get(EventKind.FAILOVER, 0)}, "
            f"closed: {counts.get(EventKind.CLOSED, 0)}"
        )
    also = f" (skipped: {', '.join(skipped)})" if skipped else ""
    _say(
        f"demo finished: every session closed{also}"
        if not failures
        else f"demo: {failures} failure(s){also}"
    )
    return EXIT_OK if not failures else EXIT_ERROR


def _manager(
    *, registry: ProviderRegistry, config: dict[str, dict[str, Any]]
) -> SessionManager:
    from tether._manager import SessionManager  # noqa: PLC0415

    return SessionManager(
        registry=registry,
        config=config,
        retry=RetryPolicy(attempts=4, wait_initial=0.05, wait_max=0.2),
        health=HealthPolicy(interval=0.25, jitter=0.1),
        environ={},
    )


async def _run_target(manager: SessionManager, target: _Target) -> None:
    name, script = target.name, target.script
    lifetime = f"lifetime {script.lifetime:g}s" if script.lifetime else "no lifetime"
    _say(f"[{name}] creating a session ({lifetime})")
    async with manager.session(
        name, lifetime=script.lifetime, **script.params
    ) as session:
        _say(f"[{name}] {session.state.value}: remote id {session.remote_id}")
        health = await manager.ping(session)
        _say(f"[{name}] ping: {health.status.value} (raw state {health.raw_state!r})")
        if script.work is not None:
            _say(f"[{name}] {await script.work(manager, session)}")
        if script.update is not None:
            await manager.update(session, **script.update)
            _say(f"[{name}] updated with {dict(script.update)}")
        await anyio.sleep(0.6)  # background health pings run meanwhile
        last = next(
            (s for s in manager.snapshot().sessions if s.id == session.id), None
        )
        if last is not None and last.last_ping_at is not None:
            _say(f"[{name}] background ping: ok={last.last_ping_ok}")
    _say(f"[{name}] closed")
    if script.failover is not None:
        policy = await script.failover(manager)
        _say(f"[{name}] failing over across {len(policy.candidates)} candidates")
        async with manager.session(policy, lifetime=script.lifetime) as session:
            _say(
                f"[{name}] failover: {session.state.value} on "
                f"remote id {session.remote_id}"
            )
        _say(f"[{name}] closed")


@contextlib.asynccontextmanager
async def _event_printer(
    manager: SessionManager, counts: dict[EventKind, int]
) -> AsyncIterator[None]:
    async def show(events: Any) -> None:
        async for event in events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
            _describe(event)

    async with manager.events() as events, anyio.create_task_group() as tg:
        tg.start_soon(show, events)
        try:
            yield
        finally:
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


def _short(value: object, width: int = 24) -> object:
    if isinstance(value, str) and len(value) > width + 3:
        return value[:width] + "..."
    return value


def _describe(event: Event) -> None:
    if event.kind is EventKind.PINGED:
        return
    sid = event.session.id[:8] if event.session else "-"
    state = event.session.state.value if event.session else ""
    data = {k: _short(v) for k, v in event.data.items()}
    extra = f" {data}" if data else ""
    _say(
        f"    event {event.kind.value:<17} {event.provider:<9} {sid:<9} {state}{extra}"
    )


def _quiet_logs() -> None:
    # The demo is an application: it may configure logging, the library never does.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR)
    )
