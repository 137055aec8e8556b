"""
Events and snapshots: subscribing.
"""

import anyio
import anyio.abc

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


E = tether.EventKind


async def watch(
    manager: tether.SessionManager,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with manager.events() as events:
        task_status.started()
        async for event in events:
            seen.append((event.kind, event.previous_state))


S = tether.SessionState
seen: list[tuple[tether.EventKind, tether.SessionState | None]] = []


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with anyio.create_task_group() as tg:
        async with tether.SessionManager(
            registry=registry,
            config={"fake": {"backend": backend}},
            clock=clock,
            retry=tether.RetryPolicy(wait_initial=0, wait_max=0),
            health=tether.HealthPolicy(interval=10, jitter=0),
        ) as manager:
            await tg.start(watch, manager)
            await manager.create("fake")
            backend.fail("ping")
            await clock.advance(10)  # the ping fails
            await clock.advance(10)  # and the next one succeeds
    assert seen == [
        (E.CREATED, None),
        (E.DEGRADED, S.ACTIVE),
        (E.RECOVERED, S.DEGRADED),
        (E.CLOSED, S.ACTIVE),  # closed on the manager's exit
    ]


if __name__ == "__main__":
    anyio.run(main)
