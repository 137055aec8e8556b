"""
OpenTelemetry instrumentation: spans per operation and per HTTP request, metrics.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from tether import (
    BreakerPolicy,
    Candidate,
    FailoverPolicy,
    ProviderRegistry,
    RetryPolicy,
    SessionManager,
)
from tether.abc import Instrumentation
from tether.exceptions import (
    AuthError,
    InvalidParameterError,
    ProviderUnavailableError,
)
from tether.otel import OpenTelemetryInstrumentation, _redact_url
from tether.testing import FakeBackend, FakeProvider, ManualClock, serve_asgi
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_otel_0a1b2c3d4e5f"


@pytest.fixture(name="exporter")
def _exporter() -> InMemorySpanExporter:
    """
    Finished spans, in memory.
    """
    return InMemorySpanExporter()


@pytest.fixture(name="reader")
def _reader() -> Iterator[InMemoryMetricReader]:
    """
    A metric reader collected on demand.
    """
    reader = InMemoryMetricReader()
    yield reader
    reader.shutdown()


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    """
    One manual clock for the manager, the fake service and the expiry gauge.
    """
    return ManualClock()


@pytest.fixture(name="instrumentation")
def _instrumentation(
    exporter: InMemorySpanExporter, reader: InMemoryMetricReader, clock: ManualClock
) -> OpenTelemetryInstrumentation:
    """
    Instrumentation on private SDK providers (the global ones stay untouched).
    """
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    return OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        clock=clock.time,
    )


@pytest.fixture(name="tracer_provider_for_caller")
def _tracer_provider_for_caller() -> TracerProvider:
    """
    The application's own tracing (a span the caller works in).
    """
    return TracerProvider()


@pytest.fixture(name="backend")
def _backend(clock: ManualClock) -> FakeBackend:
    """
    The fake service on the manual clock.
    """
    return FakeBackend(clock=clock.time)


@pytest.fixture(name="manager")
async def _manager(
    instrumentation: OpenTelemetryInstrumentation,
    backend: FakeBackend,
    clock: ManualClock,
) -> AsyncIterator[SessionManager]:
    """
    A manager on the fake provider, instrumented.
    """
    registry = ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    registry.register("fake2", FakeProvider)
    async with SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}, "fake2": {"backend": FakeBackend()}},
        retry=RetryPolicy(attempts=4, wait_initial=0, wait_max=0),
        breakers=BreakerPolicy(failure_threshold=1, cooldown=60),
        health_checks=False,
        clock=clock,
        environ={},
        instrumentation=instrumentation,
    ) as manager:
        yield manager


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    points: list[Any] = []
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def gauge(reader: InMemoryMetricReader, name: str) -> dict[tuple[Any, ...], Any]:
    return {
        tuple(sorted(p.attributes.items())): p.value
        for p in metric_points(reader, name)
    }


async def test_a_span_per_lifecycle_operation(
    manager: SessionManager, exporter: InMemorySpanExporter
) -> None:
    """
    create, ping, update, renew and close each leave a tether.<op> span with attributes.
    """
    session = await manager.create("fake", size=2, lifetime=60)
    await manager.ping(session)
    await manager.update(session, note="n")
    await manager.renew(session, lifetime=120)
    await manager.close(session)

    names = [s.name for s in exporter.get_finished_spans()]

    assert [
        "tether.create",
        "tether.ping",
        "tether.update",
        "tether.renew",
        "tether.close",
    ] == names
    for span in exporter.get_finished_spans():
        assert span.attributes is not None
        assert "fake" == span.attributes["tether.provider"]
        assert session.id == span.attributes["tether.session_id"]
        assert "ok" == span.attributes["tether.outcome"]
        assert StatusCode.UNSET == span.status.status_code
        assert SpanKind.INTERNAL == span.kind


async def test_failed_operation_span(
    manager: SessionManager, exporter: InMemorySpanExporter
) -> None:
    """
    A failing operation's span carries the error class as outcome, an error status and the exception.
    """
    with pytest.raises(InvalidParameterError):
        await manager.create("fake", size=99)

    (span,) = spans_named(exporter, "tether.create")

    assert span.attributes is not None
    assert "InvalidParameterError" == span.attributes["tether.outcome"]
    assert "fake" == span.attributes["tether.provider"]
    assert "tether.session_id" not in span.attributes
    assert StatusCode.ERROR == span.status.status_code
    assert ["exception"] == [e.name for e in span.events]


async def test_metrics_from_events(
    manager: SessionManager,
    reader: InMemoryMetricReader,
    backend: FakeBackend,
    clock: ManualClock,
) -> None:
    """
    Active sessions by provider and state, time to expiry, and ping durations are measured.
    """
    first = await manager.create("fake", lifetime=100)
    second = await manager.create("fake")
    await manager.ping(first)

    active = gauge(reader, "tether.session.active")

    assert {
        (("tether.provider", "fake"), ("tether.session.state", "active")): 2
    } == active
    assert {
        (("tether.provider", "fake"), ("tether.session_id", first.id)): 100.0
    } == gauge(reader, "tether.session.time_to_expiry")

    await clock.advance(40)

    assert [60.0] == list(gauge(reader, "tether.session.time_to_expiry").values())

    await manager.close(first)
    await manager.close(second)

    assert [0] == list(gauge(reader, "tether.session.active").values())
    assert {} == gauge(reader, "tether.session.time_to_expiry")

    (pings,) = metric_points(reader, "tether.ping.duration")

    assert 1 == pings.count
    assert "fake" == pings.attributes["tether.provider"]
    operations = {
        p.attributes["tether.operation"]: p.count
        for p in metric_points(reader, "tether.operation.duration")
    }

    assert {"create": 2, "ping": 1, "close": 2} == operations


async def test_failover_and_breaker_metrics(
    manager: SessionManager, reader: InMemoryMetricReader, backend: FakeBackend
) -> None:
    """
    A failover counts once, and the breakers that opened report state 2 (open).
    """
    backend.fail("create", "unavailable", times=2)
    policy = FailoverPolicy(
        candidates=[
            Candidate(provider="fake", key="primary"),
            Candidate(provider="fake2", key="secondary"),
        ],
        attempts_per_candidate=2,
    )

    session = await manager.create(policy)

    assert "fake2" == session.provider
    (failovers,) = metric_points(reader, "tether.failovers")

    assert 1 == failovers.value
    assert "fake2" == failovers.attributes["tether.provider"]
    assert {
        (("tether.breaker", "fake"), ("tether.provider", "fake")): 2,
        (("tether.breaker", "primary"), ("tether.provider", "fake")): 2,
    } == gauge(reader, "tether.breaker.state")


async def test_http_spans_against_the_emulator(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    """
    Each HTTP request is a CLIENT span inside its operation's span, with no secret in it.
    """
    emulator = SandboxEmulator(api_keys=(KEY,))
    registry = ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with (
        serve_asgi(emulator.app) as server,
        SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": KEY}},
            retry=RetryPolicy(attempts=1),
            health_checks=False,
            environ={},
            instrumentation=instrumentation,
        ) as manager,
    ):
        session = await manager.create("sandbox", lifetime=60)
        await manager.ping(session)
        await manager.close(session)

    (create,) = spans_named(exporter, "tether.create")
    http = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]

    assert len(http) >= 3
    first = http[0]
    assert first.parent is not None
    assert create.context is not None
    assert create.context.span_id == first.parent.span_id
    assert first.attributes is not None
    assert "POST" == first.attributes["http.request.method"]
    assert "POST" == first.name
    assert first.attributes["url.full"] == f"{server.url}/v1/sessions/session"
    assert 200 == first.attributes["http.response.status_code"]
    assert "sandbox" == first.attributes["tether.provider"]
    assert "127.0.0.1" == first.attributes["server.address"]
    everything = repr(
        [(s.name, s.attributes, s.events) for s in exporter.get_finished_spans()]
    )
    assert KEY not in everything


async def test_http_span_without_response(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    """
    A request that never got an answer still ends its span, as an error.
    """
    async with serve_asgi(SandboxEmulator(api_keys=(KEY,)).app) as server:
        dead_url = server.url
    registry = ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with SessionManager(
        registry=registry,
        config={"sandbox": {"base_url": dead_url, "api_key": KEY}},
        retry=RetryPolicy(attempts=1),
        health_checks=False,
        environ={},
        instrumentation=instrumentation,
    ) as manager:
        with pytest.raises(ProviderUnavailableError):
            await manager.create("sandbox")

    (http,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    (create,) = spans_named(exporter, "tether.create")

    assert StatusCode.ERROR == http.status.status_code
    assert "no response" == http.status.description
    assert create.attributes is not None
    assert "ProviderUnavailableError" == create.attributes["tether.outcome"]


async def test_http_error_status(
    instrumentation: OpenTelemetryInstrumentation, exporter: InMemorySpanExporter
) -> None:
    """
    A 4xx answer sets http.response.status_code, error.type and an error status.
    """
    registry = ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with (
        serve_asgi(SandboxEmulator(api_keys=("instavm_sk_other",)).app) as server,
        SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": KEY}},
            retry=RetryPolicy(attempts=1),
            health_checks=False,
            environ={},
            instrumentation=instrumentation,
        ) as manager,
    ):
        with pytest.raises(AuthError) as excinfo:
            await manager.create("sandbox")

    (http,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]

    assert http.attributes is not None
    status = http.attributes["http.response.status_code"]
    assert isinstance(status, int)
    assert 400 <= status < 500
    assert str(status) == http.attributes["error.type"]
    assert StatusCode.ERROR == http.status.status_code
    assert KEY not in str(excinfo.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/a?x=1", "https://h.example/a?x=1"),
        (
            "https://user:pw@h.example/a?api_key=s3cret&x=1&Signature=abc",
            "https://REDACTED:REDACTED@h.example/a?api_key=REDACTED&x=1&Signature=REDACTED",
        ),
        ("http://h.example/?token=t&page=2", "http://h.example/?token=REDACTED&page=2"),
    ],
)
def test_url_full_masks_secrets(url: str, expected: str) -> None:
    """
    url.full keeps the URL but masks credentials and secret query values.
    """
    assert expected == _redact_url(url)


def test_instrument_client_once(instrumentation: OpenTelemetryInstrumentation) -> None:
    """
    Instrumenting one client twice adds its hooks once.
    """
    client = httpx.AsyncClient()
    instrumentation.instrument_client("fake", client)
    instrumentation.instrument_client("fake", client)

    assert 1 == len(client.event_hooks["request"])
    assert 1 == len(client.event_hooks["response"])


def test_import_tether_does_not_import_opentelemetry() -> None:
    """
    Without importing tether.otel, nothing of OpenTelemetry is loaded.
    """
    code = (
        "import sys, tether, tether._manager, tether._sync, tether._cli, tether.testing\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
        "import tether.otel\n"
        "assert 'opentelemetry.trace' in sys.modules\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )

    assert 0 == result.returncode, result.stderr


def test_serves_as_instrumentation_protocol(
    instrumentation: OpenTelemetryInstrumentation,
) -> None:
    """
    The class satisfies tether.abc.Instrumentation (checked statically, used here).
    """
    typed: Instrumentation = instrumentation

    assert typed is instrumentation


async def test_closes_at_the_end_of_a_block_and_on_exit_have_spans(
    instrumentation: OpenTelemetryInstrumentation,
    backend: FakeBackend,
    clock: ManualClock,
    exporter: InMemorySpanExporter,
) -> None:
    """
    The close at the end of ``session()`` and the closes the manager does on
    exit each leave a tether.close span, like a close asked for by hand.
    """
    registry = ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    async with SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        health_checks=False,
        clock=clock,
        environ={},
        instrumentation=instrumentation,
    ) as manager:
        async with manager.session("fake") as in_block:
            pass
        left_open = await manager.create("fake")

    closes = spans_named(exporter, "tether.close")

    assert {in_block.id, left_open.id} == {
        span.attributes["tether.session_id"] for span in closes if span.attributes
    }
    assert all(
        span.attributes and "ok" == span.attributes["tether.outcome"] for span in closes
    )
    assert set() == backend.live_ids()


async def test_a_sessions_operations_are_children_of_its_span(
    instrumentation: OpenTelemetryInstrumentation,
    exporter: InMemorySpanExporter,
    tracer_provider_for_caller: TracerProvider,
) -> None:
    """
    The session's create span is the parent of what is done in it later
    (handle operations, update, close), linked to the caller's span where the
    caller works in another one; a background ping starts its own trace, linked
    to the session's: one session reads as one trace.
    """
    emulator = SandboxEmulator(api_keys=(KEY,))
    registry = ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    caller_tracer = tracer_provider_for_caller.get_tracer("agent")
    async with (
        serve_asgi(emulator.app) as server,
        SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": KEY}},
            retry=RetryPolicy(attempts=1),
            health_checks=False,
            environ={},
            instrumentation=instrumentation,
        ) as manager,
        manager.session(SandboxProvider, lifetime=60) as sb,
    ):
        with caller_tracer.start_as_current_span("agent.step") as step:
            await sb.execute("print(1)")
        await manager.ping(sb)

    (create,) = spans_named(exporter, "tether.create")
    (execute,) = spans_named(exporter, "tether.execute")
    (close,) = spans_named(exporter, "tether.close")
    (ping,) = spans_named(exporter, "tether.ping")
    assert create.context is not None

    for child in (execute, close):
        assert child.parent is not None
        assert create.context.span_id == child.parent.span_id
        assert create.context.trace_id == child.context.trace_id
    assert [step.get_span_context().span_id] == [
        link.context.span_id for link in execute.links
    ]
    assert ping.parent is None
    assert [create.context.span_id] == [link.context.span_id for link in ping.links]
