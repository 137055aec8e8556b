"""
Policies: failover.
"""

import anyio

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    backup = FakeBackend(clock=clock.time)
    registry.register("backup", FakeProvider)
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake", params={"size": 4}),
            tether.Candidate(provider="backup", params={"size": 2}),
        ],
        recreate_lost=True,
    )
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}, "backup": {"backend": backup}},
        clock=clock,
        retry=tether.RetryPolicy(attempts=4, wait_initial=0, wait_max=0),
        health=tether.HealthPolicy(interval=10, jitter=0),
    ) as manager:
        backend.fail("create", "unavailable", times=2)
        s = await manager.create(policy, labels={"job": "7"})
        assert s.provider == "backup"
        assert backend.calls["create"] == 2  # attempts_per_candidate

        assert s.remote_id is not None
        backup.kill(s.remote_id)
        await clock.advance(10)  # the ping finds it gone
        old = await manager.get(s.id)
        assert old.state is tether.SessionState.LOST
        new = await manager.get(old.data["replaced_by"])
        assert (new.provider, dict(new.labels)) == ("fake", {"job": "7"})


if __name__ == "__main__":
    anyio.run(main)
