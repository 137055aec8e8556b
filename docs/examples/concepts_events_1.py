"""
Events and snapshots: subscribing.
"""

import anyio

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


E = tether.EventKind


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry, config={"fake": {"backend": backend}}, clock=clock
    ) as manager:
        async with manager.events() as events:
            s = await manager.create("fake")
            await manager.ping(s)
            await manager.close(s)

            received = []
            while True:
                try:
                    received.append(events.receive_nowait())
                except anyio.WouldBlock:
                    break
    assert [e.kind for e in received] == [E.CREATED, E.PINGED, E.CLOSED]
    closed = received[-1]
    assert closed.session is not None  # the event concerns a session
    assert closed.session.state is tether.SessionState.CLOSED
    assert closed.previous_state is tether.SessionState.ACTIVE
    assert closed.at.timestamp() == clock.time()  # the manager's clock


if __name__ == "__main__":
    anyio.run(main)
