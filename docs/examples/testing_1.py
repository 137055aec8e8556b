"""
Testing your code: the pytest plugin.
"""

import anyio

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def test_job_closes_its_session(
    tether_manager: tether.SessionManager, tether_fake_backend: FakeBackend
) -> None:
    """A session block leaves nothing running on the service."""
    async with tether_manager.session("fake", labels={"job": "42"}) as s:
        assert s.remote_id in tether_fake_backend.live_ids()

    assert tether_fake_backend.live_ids() == set()


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    # pytest passes the fixtures; here we build the same by hand.
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=clock,
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        environ={},
    ) as manager:
        await test_job_closes_its_session(manager, backend)


if __name__ == "__main__":
    anyio.run(main)
