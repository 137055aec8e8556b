"""
Getting started: sessions are values.
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
        s = await manager.create("fake", note="first", lifetime=600)
        assert s.expires_at is not None
        assert s.seconds_left(s.created_at) == 600

        updated = await manager.update(s, note="second")
        assert updated.data["params"] == {"note": "second"}
        assert s.data["params"] == {"note": "first"}  # the old value is unchanged

        assert (await manager.get(s.id)).version == updated.version
        await manager.close(s)


if __name__ == "__main__":
    anyio.run(main)
