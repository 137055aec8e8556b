"""
OpenTelemetry: the instrumentation, passed to the manager.

Needs the `otel` extra (OpenTelemetry's API). Without an SDK configured the
spans and metrics go nowhere; configure one as your application does.
"""

import anyio

import tether
from tether.otel import OpenTelemetryInstrumentation
from tether.testing import FakeBackend, FakeProvider


async def main() -> None:
    backend = FakeBackend()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        instrumentation=OpenTelemetryInstrumentation(),
        registry=registry,
        config={"fake": {"backend": backend}},
    ) as manager:
        s = await manager.create("fake")
        assert (await manager.ping(s)).ok


if __name__ == "__main__":
    anyio.run(main)
