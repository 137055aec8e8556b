"""
``tether demo``: sessions on every first-party provider, on local emulators.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs

from tether._config import Candidate, FailoverPolicy, HealthPolicy, RetryPolicy
from tether._events import Event
from tether._manager import SessionManager
from tether._registry import ProviderRegistry
from tether.testing._fake import FakeBackend, FakeProvider


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


@attrs.frozen
class DemoTarget:
    """
    One provider as the demo runs it.
    """

    name: str
    params: dict[str, Any]
    update: dict[str, Any] | None = None
    lifetime: float | None = None


Starter = Callable[[contextlib.AsyncExitStack, ProviderRegistry], Any]


async def _start_fake(
    stack: contextlib.AsyncExitStack, registry: ProviderRegistry
) -> tuple[dict[str, Any], list[DemoTarget]]:
    backend = FakeBackend()
    registry.register("fake", FakeProvider, replace=True)
    return {"fake": {"backend": backend}}, [
        DemoTarget(
            "fake", {"size": 2}, update={"note": "updated by the demo"}, lifetime=60
        )
    ]


@contextlib.asynccontextmanager
async def _event_printer(manager: SessionManager) -> AsyncIterator[None]:
    import anyio  # noqa: PLC0415

    async def show(events: Any) -> None:
        async for event in events:
            _describe(event)

    async with manager.events() as events, anyio.create_task_group() as tg:
        tg.start_soon(show, events)
        try:
            yield
        finally:
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


def _describe(event: Event) -> None:
    sid = event.session.id[:8] if event.session else "-"
    state = event.session.state.value if event.session else ""
    extra = f" ({event.detail})" if event.detail else ""
    _say(f"  event {event.kind.value:<18} {event.provider:<9} {sid:<9} {state}{extra}")


async def run_demo(backend: str) -> int:
    """
    Start the emulators, run a session on each provider, and a failover.
    """
    _say(f"tether demo on {backend}")
    registry = ProviderRegistry()
    async with contextlib.AsyncExitStack() as stack:
        config, targets = await _start_fake(stack, registry)
        async with (
            SessionManager(
                registry=registry,
                config=config,
                retry=RetryPolicy(attempts=4, wait_initial=0.05, wait_max=0.2),
                health=HealthPolicy(interval=0.2, jitter=0.0),
                environ={},
            ) as manager,
            _event_printer(manager),
        ):
            import anyio  # noqa: PLC0415

            for target in targets:
                _say(f"[{target.name}] creating a session")
                async with manager.session(
                    target.name, lifetime=target.lifetime, **target.params
                ) as session:
                    _say(
                        f"[{target.name}] {session.state.value}: remote id {session.remote_id}"
                    )
                    health = await manager.ping(session)
                    _say(
                        f"[{target.name}] ping: {health.status.value} ({health.raw_state})"
                    )
                    if target.update is not None:
                        updated = await manager.update(session, **target.update)
                        _say(f"[{target.name}] updated: {dict(updated.data)}")
                    await anyio.sleep(0.5)  # let background pings run
                _say(f"[{target.name}] closed")
            _say("[failover] the primary refuses; the session lands on the secondary")
            fake: FakeBackend = config["fake"]["backend"]
            fake.fail("create", "unavailable", times=2)
            policy = FailoverPolicy(
                candidates=[
                    Candidate(provider="fake", params={"size": 1}, key="primary"),
                    Candidate(provider="fake", params={"size": 2}, key="secondary"),
                ],
                attempts_per_candidate=2,
            )
            async with manager.session(policy, lifetime=30) as session:
                _say(f"[failover] {session.state.value} on {session.params}")
    _say("demo finished: every session closed")
    return 0
