"""
Getting started: a first session on FakeProvider, the in-memory provider.
"""

import anyio

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()  # time moves only when we say so
    backend = FakeBackend(clock=clock.time)  # the fake "service"
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=clock,
    ) as manager:
        async with manager.session("fake", size=2, labels={"job": "42"}) as s:
            assert s.state is tether.SessionState.ACTIVE
            assert s.remote_id in backend.live_ids()
            health = await manager.ping(s)
            assert health.ok

        closed = await manager.get(s.id)
        assert closed.state is tether.SessionState.CLOSED
        assert backend.live_ids() == set()


if __name__ == "__main__":
    anyio.run(main)
