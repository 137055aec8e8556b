"""
Policies: health pings.
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
        health=tether.HealthPolicy(interval=10, jitter=0, failures_before_lost=3),
    ) as manager:
        s = await manager.create("fake")
        backend.fail("ping", "unavailable", times=3)

        await clock.advance(10)
        assert (await manager.get(s.id)).state is tether.SessionState.DEGRADED
        await clock.advance(10)
        assert (await manager.get(s.id)).state is tether.SessionState.DEGRADED
        await clock.advance(10)
        lost = await manager.get(s.id)
        assert lost.state is tether.SessionState.LOST
        assert lost.error is not None  # why it was lost, in words
        assert lost.error.startswith("3 pings failed in a row")
        assert backend.calls["ping"] == 3


if __name__ == "__main__":
    anyio.run(main)
