"""
Policies: lifetimes and keepalive.
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
        registry=registry, config={"fake": {"backend": backend}}, clock=clock
    ) as manager:
        s = await manager.create("fake", lifetime=100, keepalive=True)
        backend.fail("renew", "unavailable")  # the first renewal fails

        await clock.advance(150)  # renewed at 80 s, until 180 s
        kept = await manager.get(s.id)
        assert kept.state is tether.SessionState.ACTIVE
        left = kept.seconds_left(kept.created_at)  # None without a deadline
        assert left is not None
        assert left >= 180
        assert backend.calls["renew"] >= 2  # the failed one, and its retry


if __name__ == "__main__":
    anyio.run(main)
