"""
Policies: retries.
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
        backend.fail("create", "rate_limited", retry_after=7)
        created = []

        async def create() -> None:
            created.append(await manager.create("fake"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await clock.advance(6.9)
            assert (backend.calls["create"], created) == (1, [])
            await clock.advance(0.2)

        assert backend.calls["create"] == 2
        assert len(created) == 1


if __name__ == "__main__":
    anyio.run(main)
