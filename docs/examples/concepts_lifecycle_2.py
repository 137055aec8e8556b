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
        s = await manager.create("fake")
        assert s.remote_id is not None  # the service's id, once it answered
        backend.kill(s.remote_id)  # it dies on the service's side

        health = await manager.ping(s)
        assert health.status is tether.HealthStatus.GONE
        lost = await manager.get(s.id)
        assert lost.state is tether.SessionState.LOST
        assert lost.error == "the service no longer has it"

        closed = await manager.close(s)  # LOST may still be closed
        assert closed.state is tether.SessionState.CLOSED
        assert (await manager.close(s)).state is tether.SessionState.CLOSED


if __name__ == "__main__":
    anyio.run(main)
