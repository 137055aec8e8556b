"""
tether's pytest plugin (entry point ``pytest11``): fixtures for your tests.

Installed with tether; nothing to configure. Fixtures:

- ``tether_clock``: a :class:`~tether.testing.ManualClock`.
- ``tether_fake_backend``: a :class:`~tether.testing.FakeBackend` on that clock.
- ``tether_registry``: a registry with only ``"fake"`` (:class:`FakeProvider`).
- ``tether_manager``: an open :class:`~tether.SessionManager` on all of the
  above, retrying without waiting (async fixture: use it from anyio tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether._config import RetryPolicy
from tether._manager import SessionManager
from tether._registry import ProviderRegistry
from tether.testing._clock import ManualClock
from tether.testing._fake import FakeBackend, FakeProvider


@pytest.fixture(name="tether_clock")
def _tether_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(name="tether_fake_backend")
def _tether_fake_backend(tether_clock: ManualClock) -> FakeBackend:
    return FakeBackend(clock=tether_clock.time)


@pytest.fixture(name="tether_registry")
def _tether_registry() -> ProviderRegistry:
    registry = ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    return registry


@pytest.fixture(name="tether_manager")
async def _tether_manager(
    tether_registry: ProviderRegistry,
    tether_fake_backend: FakeBackend,
    tether_clock: ManualClock,
) -> AsyncIterator[SessionManager]:
    async with SessionManager(
        registry=tether_registry,
        config={"fake": {"backend": tether_fake_backend}},
        retry=RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=tether_clock,
        environ={},
    ) as manager:
        yield manager
