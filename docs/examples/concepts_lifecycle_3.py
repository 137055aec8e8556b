"""
The lifecycle: cancellation and the write-ahead record.
"""

import anyio
import attrs

import tether
from tether.exceptions import OutcomeUnknownError
from tether.testing import FakeBackend, FakeProvider, ManualClock


class Blind(FakeProvider):
    """A service that can neither find a session by tether's id nor list."""

    capabilities = attrs.evolve(FakeProvider.capabilities, find=False, list=False)


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    blind = FakeBackend(clock=clock.time)
    registry.register("blind", Blind)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}, "blind": {"backend": blind}},
        clock=clock,
    ) as manager:
        backend.fail("create", "timeout")  # carried out, but no answer
        s = await manager.create("fake")  # found by its tether id
        assert s.state is tether.SessionState.ACTIVE
        assert (backend.calls["create"], backend.calls["find"]) == (1, 1)

        blind.fail("create", "timeout")
        try:
            await manager.create("blind")
        except OutcomeUnknownError:
            pass
        (pending,) = await manager.list(state=tether.SessionState.CREATING)
        assert pending.error is not None
        assert pending.error.startswith("outcome unknown")
        assert pending.remote_id is None
        assert len(blind.live_ids()) == 1  # the service has it

        report = await manager.reconcile()
        assert report.counts == {"unresolved": 1}


if __name__ == "__main__":
    anyio.run(main)
