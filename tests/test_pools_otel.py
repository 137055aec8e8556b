"""
Pool metrics in the OpenTelemetry instrumentation: counters per pool event,
the refill lag, and the idle and in-use gauge.
"""

from __future__ import annotations

from typing import Any

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import tether
from tether.exceptions import PoolExhaustedError
from tether.otel import OpenTelemetryInstrumentation
from tether.testing import FakeBackend, FakeProvider, ManualClock


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[Any, ...], Any]:
    """
    A metric's data points by their sorted attributes.
    """
    data = reader.get_metrics_data()
    found: dict[tuple[Any, ...], Any] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        found[tuple(sorted(p.attributes.items()))] = p
    return found


async def test_pool_events_become_metrics() -> None:
    """
    Refills, recycled sessions and exhausted callers are counted per pool;
    each refill's lag is recorded; the gauge shows idle and in-use sessions.
    """
    reader = InMemoryMetricReader()
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        health_checks=False,
        clock=clock,
        environ={},
        instrumentation=OpenTelemetryInstrumentation(
            meter_provider=MeterProvider(metric_readers=[reader]), clock=clock.time
        ),
    ) as manager:
        pool = manager.pool("fake", min_idle=1, max_size=1, timeout=0, name="m")
        with anyio.fail_after(10):
            while pool.snapshot().idle < 1:  # noqa: ASYNC110 -- polling a figure
                await anyio.sleep(0.01)
        async with pool.acquire():
            try:
                async with pool.acquire():
                    pass
            except PoolExhaustedError:
                pass
        refills = points(reader, "tether.pool.refills")
        exhausted = points(reader, "tether.pool.exhausted")
        lag = points(reader, "tether.pool.refill_lag")
        sessions = points(reader, "tether.pool.sessions")
        reader.shutdown()

    key = (("tether.pool", "m"), ("tether.provider", "fake"))
    assert 1 == refills[key].value
    assert 1 == exhausted[key].value
    assert 1 == lag[key].count
    assert lag[key].sum >= 0
    assert {
        (("tether.pool", "m"), ("tether.pool.state", "idle")): 0,
        (("tether.pool", "m"), ("tether.pool.state", "in_use")): 1,
    } == {k: p.value for k, p in sessions.items()}
