"""
Getting started: configuration.
"""

import anyio

import tether
from tether.exceptions import ConfigError
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend, "timeout": 0}},
        clock=clock,
    ) as manager:
        try:
            manager.provider("fake")
        except ConfigError as exc:
            assert exc.provider == "fake"
            assert "timeout" in str(exc)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        environ={"TETHER_FAKE_TIMEOUT": "5"},
        clock=clock,
    ) as manager:
        assert manager.provider("fake").config.timeout == 5.0


if __name__ == "__main__":
    anyio.run(main)
