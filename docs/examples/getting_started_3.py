"""
Getting started: the operations.
"""

import anyio
import attrs

import tether
from tether.exceptions import InvalidParameterError, NotSupportedError
from tether.testing import FakeBackend, FakeProvider, ManualClock


class Frozen(FakeProvider):
    """A service whose sessions cannot change."""

    capabilities = attrs.evolve(FakeProvider.capabilities, update=False)


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)

    registry.register("frozen", Frozen)
    async with tether.SessionManager(
        registry=registry, config={"frozen": {"backend": backend}}, clock=clock
    ) as manager:
        s = await manager.create("frozen")
        try:
            await manager.update(s, note="x")
        except NotSupportedError as exc:
            assert (exc.provider, exc.operation) == ("frozen", "update")
        assert backend.calls["update"] == 0

        try:
            await manager.create("frozen", size=99)
        except InvalidParameterError as exc:
            assert (exc.field, exc.allowed) == ("size", "1 to 8")
        assert backend.calls["create"] == 1


if __name__ == "__main__":
    anyio.run(main)
