"""
Fixtures for the focused tests of each ``tether._lifecycle`` collaborator.

Two ways in: a bare :class:`Runtime` (with :class:`Slots`) for the units that
stand alone (scheduler, records, calls, bus, slots), and a real open
:class:`SessionManager` on a :class:`ManualClock` and :class:`FakeBackend`s
for the collaborators that need the others (health, jobs, deadlines, creation,
closing, reconcile). Time moves only by ``clock.advance``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import anyio
import attrs
import pytest

import tether
from tether._lifecycle.runtime import ManagerState, Runtime
from tether._lifecycle.slots import Slots
from tether.abc import Capabilities
from tether.testing import FakeBackend, FakeProvider, ManualClock


FAST = tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0)


class Other(FakeProvider):
    """
    A second fake provider, for failover across providers.
    """


class OwnDeadline(FakeProvider):
    """
    A provider whose service has no lifetime of its own and cannot renew:
    tether keeps the deadline and closes the session when it comes.
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, renew=False, server_ttl=False
    )


class NoLocate(FakeProvider):
    """
    A provider that can neither find nor list nor get its sessions.
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, find=False, list=False, get=False
    )


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="backend")
def _backend(clock: ManualClock) -> FakeBackend:
    return FakeBackend(clock=clock.time)


@pytest.fixture(name="other")
def _other(clock: ManualClock) -> FakeBackend:
    return FakeBackend(clock=clock.time)


@pytest.fixture(name="registry")
def _registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    registry.register("other", Other)
    registry.register("own", OwnDeadline)
    registry.register("nolocate", NoLocate)
    return registry


@pytest.fixture(name="store")
def _store(clock: ManualClock) -> tether.MemoryStore:
    # Leases on the manual clock too, so a test can let one lapse.
    return tether.MemoryStore(clock=clock.time)


@pytest.fixture(name="make")
def _make(
    registry: tether.ProviderRegistry,
    backend: FakeBackend,
    other: FakeBackend,
    clock: ManualClock,
    store: tether.MemoryStore,
) -> Callable[..., tether.SessionManager]:
    """
    A factory of managers on the test's clock, store and backends: pings every
    10 s without jitter, LOST after 3 failed pings, retries without waiting.
    """

    def make(**kw: Any) -> tether.SessionManager:
        kw.setdefault("retry", FAST)
        kw.setdefault(
            "health",
            tether.HealthPolicy(interval=10, jitter=0, failures_before_lost=3),
        )
        kw.setdefault("store", store)
        return tether.SessionManager(
            registry=registry,
            config={
                "fake": {"backend": backend},
                "other": {"backend": other},
                "own": {"backend": backend},
                "nolocate": {"backend": backend},
            },
            clock=clock,
            environ={},
            **kw,
        )

    return make


@attrs.define
class Recorder:
    """
    The events a manager emitted while it was recording.
    """

    events: list[tether.Event] = attrs.Factory(list)

    def kinds(self) -> list[tether.EventKind]:
        return [e.kind for e in self.events]

    def of(self, kind: tether.EventKind) -> list[tether.Event]:
        return [e for e in self.events if e.kind is kind]


@pytest.fixture(name="recording")
def _recording() -> Callable[
    [tether.SessionManager], contextlib.AbstractAsyncContextManager[Recorder]
]:
    """
    ``async with recording(manager) as rec:``: every event of the block in
    ``rec.events`` (delivered before the block ends).
    """

    @contextlib.asynccontextmanager
    async def recording(manager: tether.SessionManager) -> AsyncIterator[Recorder]:
        rec = Recorder()
        async with manager.events() as stream, anyio.create_task_group() as tg:

            async def pump() -> None:
                async for event in stream:
                    rec.events.append(event)

            tg.start_soon(pump)
            try:
                yield rec
            finally:
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()

    return recording


def make_runtime(clock: ManualClock, **kw: Any) -> Runtime:
    """
    A bare runtime, as a manager builds it, open.
    """
    kw.setdefault("store", tether.MemoryStore(clock=clock.time))
    kw.setdefault("retry", FAST)
    kw.setdefault("health", tether.HealthPolicy(interval=10, jitter=0))
    runtime = Runtime(
        clock=clock,
        admission=kw.pop("admission", tether.AdmissionPolicy()),
        shield_timeout=kw.pop("shield_timeout", 30.0),
        owner=kw.pop("owner", "me"),
        watch=kw.pop("watch", False),
        retain_ended=kw.pop("retain_ended", None),
        **kw,
    )
    runtime.state = ManagerState.OPEN
    return runtime


def make_slots(
    runtime: Runtime,
    registry: tether.ProviderRegistry,
    backend: FakeBackend,
    **kw: Any,
) -> Slots:
    kw.setdefault("config", {"fake": {"backend": backend}})
    kw.setdefault("environ", {})
    kw.setdefault("client_factory", None)
    kw.setdefault("breakers", tether.BreakerPolicy())
    kw.setdefault("instrumentation", None)
    return Slots(runtime, registry=registry, **kw)


@pytest.fixture(name="runtime")
def _runtime(clock: ManualClock) -> Runtime:
    return make_runtime(clock)


@pytest.fixture(name="slots")
async def _slots(
    runtime: Runtime, registry: tether.ProviderRegistry, backend: FakeBackend
) -> AsyncIterator[Slots]:
    slots = make_slots(runtime, registry, backend)
    try:
        yield slots
    finally:
        await slots.aclose()


@pytest.fixture(name="runtime_factory")
def _runtime_factory(clock: ManualClock) -> Callable[..., Runtime]:
    return lambda **kw: make_runtime(clock, **kw)


@pytest.fixture(name="slots_factory")
def _slots_factory(
    registry: tether.ProviderRegistry, backend: FakeBackend
) -> Callable[..., Slots]:
    return lambda runtime, **kw: make_slots(runtime, registry, backend, **kw)
