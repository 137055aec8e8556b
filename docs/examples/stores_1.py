"""
Stores: how long records stay.
"""

import anyio

import tether
from tether.testing import FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry,
        clock=clock,
        retain_ended=600,  # ten minutes
    ) as manager:
        closed = await manager.close(await manager.create("fake"))
        await clock.advance(300)
        assert (await manager.get(closed.id)).state is tether.SessionState.CLOSED

        await clock.advance(600)  # the manager looks every five minutes at most
        try:
            await manager.get(closed.id)
        except tether.exceptions.SessionNotFoundError:
            pass  # the record is gone from the store
        else:
            raise AssertionError("the record should be gone")


if __name__ == "__main__":
    anyio.run(main)
