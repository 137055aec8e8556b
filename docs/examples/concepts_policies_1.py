"""
Policies: retries.
"""

import anyio

import tether
from tether.exceptions import AuthError
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
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
    ) as manager:
        backend.fail("create", "unavailable", times=2)  # two 503s
        s = await manager.create("fake")
        assert s.state is tether.SessionState.ACTIVE
        assert backend.calls["create"] == 3

        backend.fail("update", "auth")  # a 401: permanent
        try:
            await manager.update(s, note="x")
        except AuthError as exc:
            assert exc.status_code == 401
        assert backend.calls["update"] == 1  # not retried


if __name__ == "__main__":
    anyio.run(main)
