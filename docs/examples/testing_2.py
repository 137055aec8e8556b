"""
Testing your code: fakeProvider and FakeBackend.
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
        entered, release = backend.gate("create")

        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.create, "fake")
            await entered.wait()  # the service has the request
            tg.cancel_scope.cancel()  # the caller gives up
            release.set()  # the service answers anyway

        (record,) = await manager.list()
        assert record.state is tether.SessionState.CLOSED
        assert backend.calls["close"] == 1
        assert backend.live_ids() == set()


if __name__ == "__main__":
    anyio.run(main)
