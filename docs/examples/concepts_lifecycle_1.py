"""
The lifecycle: what moves a session.
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
        s = await manager.create("fake", lifetime=60)

        await clock.advance(59)
        assert (await manager.get(s.id)).state is tether.SessionState.ACTIVE
        await clock.advance(1)
        assert (await manager.get(s.id)).state is tether.SessionState.EXPIRED
        assert backend.calls["close"] == 1

        try:
            await manager.ping(s)
        except tether.exceptions.SessionExpiredError as exc:
            assert exc.state == "expired"


if __name__ == "__main__":
    anyio.run(main)
