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
        health=tether.HealthPolicy(interval=10, jitter=0),
    ) as manager:
        s = await manager.create("fake")
        assert s.remote_id is not None  # the service's id, once it answered
        backend.script(s.remote_id, ["sick", "running"])

        await clock.advance(10)
        sick = await manager.get(s.id)
        assert (sick.state, sick.raw_state) == (tether.SessionState.DEGRADED, "sick")
        await clock.advance(10)
        assert (await manager.get(s.id)).state is tether.SessionState.ACTIVE


if __name__ == "__main__":
    anyio.run(main)
