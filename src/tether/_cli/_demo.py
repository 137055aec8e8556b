"""
``tether demo``: a session on every first-party provider, on local emulators.

The providers are found the way users find them: through the installed
``tether.providers`` entry points. Each emulator is served on a loopback port in
this process; nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import attrs
import structlog

from tether._cli._context import AddCommand, Context
from tether._config import FailoverPolicy, HealthPolicy, RetryPolicy
from tether._events import Event, EventKind
from tether._manager import SessionManager
from tether._registry import ProviderRegistry
from tether._session import Session
from tether.exceptions import ProviderLoadError, ProviderNotFoundError
from tether.testing._asgi import serve_asgi


def _say(message: str) -> None:
    print(message, flush=True)


# Demo-only credentials: the emulators accept them; they are not real keys.
MORPHEUS_KEY = "sk-DeMo01.0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
SANDBOX_KEY = "instavm_sk_demo_0123456789"
RELAY_TOKEN = "relay-demo-token-0123456789"  # noqa: S105

Work = Callable[[SessionManager, Session], Awaitable[str]]


@attrs.frozen
class Target:
    """
    One provider as the demo runs it.
    """

    name: str
    config: dict[str, Any]
    params: dict[str, Any]
    work: Work
    update: dict[str, Any] | None = None
    lifetime: float | None = None
    failover: Callable[[SessionManager], Awaitable[FailoverPolicy]] | None = None


async def _sandbox(stack: contextlib.AsyncExitStack) -> Target:
    emulator_mod = importlib.import_module("tether_sandbox.emulator")
    emulator = emulator_mod.SandboxEmulator(api_keys=(SANDBOX_KEY,))
    server = await stack.enter_async_context(serve_asgi(emulator.app))

    async def work(manager: SessionManager, session: Session) -> str:
        result = await manager.provider("sandbox").execute(  # type: ignore[attr-defined]
            session, "print('hello from the sandbox')"
        )
        return f"execute -> {result.stdout.strip()!r}"

    return Target(
        name="sandbox",
        config={"base_url": server.url, "api_key": SANDBOX_KEY},
        params={"vcpu_count": 2, "memory_mb": 512},
        lifetime=300,
        work=work,
    )


async def _sipher(stack: contextlib.AsyncExitStack) -> Target:
    emulator_mod = importlib.import_module("tether_sipher.emulator")
    emulator = emulator_mod.SipherEmulator()
    key = emulator_mod.PRO_KEY
    server = await stack.enter_async_context(serve_asgi(emulator.app))

    async def work(manager: SessionManager, session: Session) -> str:
        response = await manager.provider("sipher").session_request(  # type: ignore[attr-defined]
            session,
            "POST",
            "/v1/backends/compare",
            json={"operation": "stealth_privacy"},
        )
        return f"request with X-Session-Id -> HTTP {response.status_code}"

    return Target(
        name="sipher",
        config={"base_url": server.url, "api_key": key},
        params={"chain": "solana", "privacy_level": "shielded"},
        update={"privacy_level": "maximum"},
        lifetime=600,
        work=work,
    )


async def _relay(stack: contextlib.AsyncExitStack) -> Target:
    emulator_mod = importlib.import_module("tether_relay.emulator")
    emulator = emulator_mod.RelayEmulator(tokens=(RELAY_TOKEN,), ready_delay=0.2)
    server = await stack.enter_async_context(serve_asgi(emulator.app))

    async def work(manager: SessionManager, session: Session) -> str:
        user = await manager.provider("relay").authorize_user(session, "9.9.9.9")  # type: ignore[attr-defined]
        return f"authorized 9.9.9.9 -> {user!r}"

    return Target(
        name="relay",
        config={"base_url": server.url, "api_token": RELAY_TOKEN},
        params={"users": ["1.1.1.1", "8.8.8.8"]},
        update={"revoke": ["8.8.8.8"]},
        lifetime=120,
        work=work,
    )


async def _morpheus(stack: contextlib.AsyncExitStack) -> Target:
    emulator_mod = importlib.import_module("tether_morpheus.emulator")
    emulator = emulator_mod.MorpheusEmulator(api_keys=[MORPHEUS_KEY])
    server = await stack.enter_async_context(serve_asgi(emulator.app))
    model = "llama-3.3-70b"

    async def work(manager: SessionManager, session: Session) -> str:
        reply = await manager.provider("morpheus").chat(  # type: ignore[attr-defined]
            session, [{"role": "user", "content": "hello"}]
        )
        return f"chat -> {reply.content!r}"

    async def failover(manager: SessionManager) -> FailoverPolicy:
        bids = emulator.bids_for(model)
        emulator.fail_provider(emulator.bid_provider(bids[0]))
        _say(f"[morpheus] the provider behind the best bid {bids[0][:10]}... refuses")
        candidates = await manager.provider("morpheus").failover_candidates(  # type: ignore[attr-defined]
            model, fallback_models=["mistral-31-24b"]
        )
        return FailoverPolicy(candidates=candidates, attempts_per_candidate=1)

    return Target(
        name="morpheus",
        config={"base_url": server.url, "api_key": MORPHEUS_KEY},
        params={"model": model},
        lifetime=600,
        work=work,
        failover=failover,
    )


STARTERS = {
    "morpheus": _morpheus,
    "sandbox": _sandbox,
    "sipher": _sipher,
    "relay": _relay,
}


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


async def run_demo(backend: str) -> int:
    """
    Start the emulators, run a session on each provider, and a failover.
    """
    _quiet_logs()
    _say(f"tether demo on {backend}: four providers on local emulators")
    registry = ProviderRegistry()
    failures = 0
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for name, start in STARTERS.items():
            try:
                registry.load(name)
            except (ProviderNotFoundError, ProviderLoadError) as exc:
                _say(f"[{name}] not available: {exc}")
                failures += 1
                continue
            targets.append(await start(stack))
        manager = await stack.enter_async_context(
            SessionManager(
                registry=registry,
                config={t.name: t.config for t in targets},
                retry=RetryPolicy(attempts=4, wait_initial=0.05, wait_max=0.2),
                health=HealthPolicy(interval=0.25, jitter=0.1),
                environ={},
            )
        )
        counts: dict[EventKind, int] = {}
        await stack.enter_async_context(_event_printer(manager, counts))
        for target in targets:
            failures += await _run_target(manager, target)
        await anyio.sleep(0.1)
        _say(
            f"sessions created: {counts.get(EventKind.CREATED, 0)}, "
            f"health pings: {counts.get(EventKind.PINGED, 0)}, "
            f"failovers: {counts.get(EventKind.FAILOVER, 0)}, "
            f"closed: {counts.get(EventKind.CLOSED, 0)}"
        )
    _say(
        "demo finished: every session closed"
        if not failures
        else f"demo: {failures} failure(s)"
    )
    return 0 if not failures else 1


async def _run_target(manager: SessionManager, target: Target) -> int:
    name = target.name
    _say(f"[{name}] creating a session (lifetime {target.lifetime}s)")
    async with manager.session(
        name, lifetime=target.lifetime, **target.params
    ) as session:
        _say(f"[{name}] {session.state.value}: remote id {session.remote_id}")
        health = await manager.ping(session)
        _say(f"[{name}] ping: {health.status.value} (raw state {health.raw_state!r})")
        _say(f"[{name}] {await target.work(manager, session)}")
        if target.update is not None:
            await manager.update(session, **target.update)
            _say(f"[{name}] updated with {target.update}")
        await anyio.sleep(0.6)  # background health pings run meanwhile
        last = next(
            (s for s in manager.snapshot().sessions if s.id == session.id), None
        )
        if last is not None and last.last_ping_at is not None:
            _say(f"[{name}] background ping: ok={last.last_ping_ok}")
    _say(f"[{name}] closed")
    if target.failover is not None:
        policy = await target.failover(manager)
        async with manager.session(policy, lifetime=target.lifetime) as session:
            _say(
                f"[{name}] failover: {session.state.value} on "
                f"bid {str(session.params.get('bid_id'))[:10]}..."
            )
        _say(f"[{name}] closed")
    return 0


def register(add: AddCommand) -> None:
    """
    Add ``demo`` to the parser.
    """
    add(
        "demo",
        "run sessions on every first-party provider's emulator",
        _demo,
    )


def _demo(ctx: Context) -> int:
    return int(anyio.run(run_demo, ctx.args.backend, backend=ctx.args.backend))
