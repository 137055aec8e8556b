"""
EventBus on its own: every subscriber gets every event, a slow one misses the
newest rather than slowing the manager, and instrumentation cannot break it.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest

import tether
from tether._lifecycle.bus import EventBus


K = tether.EventKind


def drain(stream) -> list[tether.Event]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return out


class Instrumentation:
    def __init__(self, *, broken: bool = False) -> None:
        self.events: list[tether.Event] = []
        self.spans: list[dict] = []
        self.broken = broken

    def on_event(self, event):
        self.events.append(event)
        if self.broken:
            raise RuntimeError("instrumentation bug")

    @contextlib.contextmanager
    def operation(self, name, *, provider, session_id):
        attributes = {"name": name}
        self.spans.append(attributes)
        yield attributes

    def instrument_client(self, name, client):
        pass


async def test_every_subscriber_gets_every_event_with_the_clocks_time(runtime, clock):
    """
    Each subscriber receives each event, stamped with the manager's clock.
    """
    bus = EventBus(runtime, None)
    async with bus.subscribe(10) as one, bus.subscribe(10) as two:
        bus.emit(K.CREATED, provider="fake", detail="x")
        got = drain(one), drain(two)

    for events in got:
        assert [(K.CREATED, "fake", "x")] == [
            (e.kind, e.provider, e.detail) for e in events
        ]
        assert clock.time() == events[0].at.timestamp()


async def test_a_full_subscriber_misses_the_newest_and_never_blocks(runtime):
    """
    A subscriber whose buffer is full misses later events; emit never waits.
    """
    bus = EventBus(runtime, None)
    async with bus.subscribe(2) as slow:
        for i in range(5):  # emit is synchronous: it cannot wait
            bus.emit(K.PINGED, provider="fake", detail=str(i))
        got = [e.detail for e in drain(slow)]

    assert ["0", "1"] == got


async def test_a_finished_subscription_gets_nothing_more(runtime):
    """
    Leaving the block unsubscribes: later events go nowhere, without error.
    """
    bus = EventBus(runtime, None)
    async with bus.subscribe(10):
        pass
    bus.emit(K.CREATED, provider="fake")

    assert [] == bus._subscribers


async def test_close_ends_every_subscription(runtime):
    """
    When the manager closes, each subscriber's iteration ends.
    """
    bus = EventBus(runtime, None)
    seen: list[tether.Event] = []
    async with bus.subscribe(10) as stream:
        bus.emit(K.CREATED, provider="fake")
        bus.close()
        with anyio.fail_after(1):
            async for event in stream:
                seen.append(event)

    assert [K.CREATED] == [e.kind for e in seen]


async def test_broken_instrumentation_does_not_stop_events(runtime):
    """
    Instrumentation sees each event first; if it raises, subscribers still
    get the event and emit does not raise.
    """
    instrumentation = Instrumentation(broken=True)
    bus = EventBus(runtime, instrumentation)
    async with bus.subscribe(10) as stream:
        bus.emit(K.LOST, provider="fake")
        got = drain(stream)

    assert [K.LOST] == [e.kind for e in instrumentation.events]
    assert [K.LOST] == [e.kind for e in got]


async def test_an_operation_records_its_outcome(runtime):
    """
    An operation span's outcome is "ok", or the class name of the error that
    ended it (which still propagates).
    """
    instrumentation = Instrumentation()
    bus = EventBus(runtime, instrumentation)
    with bus.operation("ping", provider="fake", session_id="s1"):
        pass
    with (
        pytest.raises(KeyError),
        bus.operation("renew", provider="fake", session_id="s1"),
    ):
        raise KeyError("x")

    assert [("ping", "ok"), ("renew", "KeyError")] == [
        (s["name"], s["outcome"]) for s in instrumentation.spans
    ]
    assert bus.instrumented
    assert not EventBus(runtime, None).instrumented
