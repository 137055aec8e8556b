"""
Events and snapshots: snapshots.
"""

import anyio

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=clock,
        health=tether.HealthPolicy(interval=10, jitter=0),
    ) as manager:
        s = await manager.create("fake", lifetime=100)
        await clock.advance(10)
        snap = manager.snapshot()
    fake = snap.providers["fake"]
    assert (fake.breaker, fake.ping_interval) == (tether.BreakerState.CLOSED, 10)
    assert dict(fake.sessions) == {"active": 1}
    (one,) = snap.sessions
    assert (one.id, one.last_ping_ok, one.consecutive_failures) == (s.id, True, 0)
    assert one.seconds_to_expiry == 90


if __name__ == "__main__":
    anyio.run(main)
