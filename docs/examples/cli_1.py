"""
Command line, sync facade and OpenTelemetry: openTelemetry.
"""

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import tether
from tether.otel import OpenTelemetryInstrumentation
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        clock=clock,
        environ={},
        instrumentation=OpenTelemetryInstrumentation(tracer_provider=tracer_provider),
    ) as manager:
        session = await manager.create("fake", size=1)
        await manager.ping(session)
        await manager.close(session)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["tether.create", "tether.ping", "tether.close"]
    attributes = spans[0].attributes
    assert attributes is not None
    assert attributes["tether.outcome"] == "ok"
    assert attributes["tether.session_id"] == session.id


if __name__ == "__main__":
    anyio.run(main)
