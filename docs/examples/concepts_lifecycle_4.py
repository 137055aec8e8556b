"""
The lifecycle: scopes.
"""

import anyio

import tether
from tether.exceptions import SessionExpiredError
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry, config={"fake": {"backend": backend}}, clock=clock
    ) as manager:
        s = await manager.create("fake", lifetime=55)
        ticks: list[float | str] = []

        async def work() -> None:
            async with manager.scope(s):
                while True:
                    await clock.sleep(10)
                    ticks.append(clock.time() - s.created_at.timestamp())

        async def run() -> None:
            try:
                await work()
            except SessionExpiredError:
                ticks.append("expired")

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await clock.advance(100)

        assert ticks == [10, 20, 30, 40, 50, "expired"]  # the deadline came at 55


if __name__ == "__main__":
    anyio.run(main)
