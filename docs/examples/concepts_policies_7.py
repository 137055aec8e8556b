"""
Policies: circuit breakers.
"""

import anyio

import tether
from tether.exceptions import ProviderUnavailableError
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
        retry=tether.RetryPolicy(attempts=1),
        breakers=tether.BreakerPolicy(failure_threshold=2, cooldown=30),
    ) as manager:
        backend.fail("create", "unavailable", times=2)
        for _ in range(2):
            try:
                await manager.create("fake")
            except ProviderUnavailableError:
                pass
        assert manager.snapshot().providers["fake"].breaker is tether.BreakerState.OPEN

        with anyio.fail_after(1):  # a caller who cannot wait 30 s
            try:
                await manager.create("fake")
            except ProviderUnavailableError as exc:
                assert "circuit breakers are open" in str(exc)
        assert backend.calls["create"] == 2  # nothing was sent

        await clock.advance(30)  # cooled down: one probe
        await manager.create("fake")
        assert (
            manager.snapshot().providers["fake"].breaker is tether.BreakerState.CLOSED
        )


if __name__ == "__main__":
    anyio.run(main)
