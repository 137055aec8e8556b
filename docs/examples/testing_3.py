"""
Testing your code: manualClock.
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
        health_checks=False,  # expiry only: see below
    ) as manager:
        s = await manager.create("fake", lifetime=3600)
        await clock.advance(3599)
        assert (await manager.get(s.id)).state is tether.SessionState.ACTIVE
        await clock.advance(1)
        assert (await manager.get(s.id)).state is tether.SessionState.EXPIRED
        assert backend.live_ids() == set()
        assert clock.time() == s.created_at.timestamp() + 3600


if __name__ == "__main__":
    anyio.run(main)
