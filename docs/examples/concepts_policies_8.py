"""
Policies: admission.
"""

import anyio
import attrs

import tether
from tether.exceptions import AdmissionError
from tether.testing import FakeBackend, FakeProvider, ManualClock


class OnePerKey(FakeProvider):
    """A service that allows one live session per API key."""

    capabilities = attrs.evolve(
        FakeProvider.capabilities, max_sessions_per_credential=1
    )


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)

    registry.register("one", OnePerKey)
    config = {"one": {"backend": backend}}
    async with tether.SessionManager(
        registry=registry,
        config=config,
        clock=clock,
        admission=tether.AdmissionPolicy(mode="reject"),
    ) as manager:
        first = await manager.create("one")
        try:
            await manager.create("one")
        except AdmissionError as exc:
            assert (exc.provider, exc.limit) == ("one", 1)
        assert backend.calls["create"] == 1
    async with tether.SessionManager(
        registry=registry,
        config=config,
        clock=clock,
        admission=tether.AdmissionPolicy(mode="replace"),
    ) as manager:
        first = await manager.create("one")
        second = await manager.create("one")
        assert (await manager.get(first.id)).state is tether.SessionState.CLOSED
        assert backend.live_ids() == {second.remote_id}
    async with tether.SessionManager(
        registry=registry,
        config=config,
        clock=clock,
        admission=tether.AdmissionPolicy(mode="wait", timeout=5),
    ) as manager:
        order: list[str] = []

        async def use(name: str) -> None:
            async with manager.session("one"):
                order.append(f"{name} in")
                await clock.sleep(10)
                order.append(f"{name} out")

        async with anyio.create_task_group() as tg:
            tg.start_soon(use, "a")
            tg.start_soon(use, "b")
            while len(order) < 4:  # each holder keeps the key for 10 s
                await clock.advance(10)

        # One at a time (which goes first is up to the scheduler):
        one, other = order[0].split()[0], order[2].split()[0]
        assert order == [f"{one} in", f"{one} out", f"{other} in", f"{other} out"]
        assert {one, other} == {"a", "b"}


if __name__ == "__main__":
    anyio.run(main)
