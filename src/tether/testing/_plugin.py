"""
tether's pytest plugin (entry point ``pytest11``): fixtures for your tests.

Installed with tether; nothing to configure. Fixtures:

- ``tether_clock``: a :class:`~tether.testing.ManualClock`.
- ``tether_fake_backend``: a :class:`~tether.testing.FakeBackend` on that clock.
- ``tether_registry``: a registry with ``"fake"`` (:class:`FakeProvider`) and
  the installed providers named by the ``tether_providers`` ini option.
- ``tether_manager_factory``: opens managers on all of the above, with your
  providers, config and policies (async context managers).
- ``tether_manager``: one open :class:`~tether.SessionManager` from the
  factory, with its defaults (async fixture: use it from anyio tests).
- ``tether_faults``: builds :class:`~tether.testing.FaultInjector` s for a test
  that means to see faults, and fails it at teardown if one injected none.

Ini options (``[tool.pytest.ini_options]``):

- ``tether_providers``: installed providers (entry-point names) to put in
  ``tether_registry`` beside ``"fake"``, e.g. ``sandbox relay``.
- ``tether_health_checks``: whether background pinging runs in managers the
  fixtures open (default ``true``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from tether._config import RetryPolicy
from tether._manager import SessionManager
from tether._registry import ProviderRegistry, default_registry
from tether.testing._asgi import ASGIApp
from tether.testing._clock import ManualClock
from tether.testing._fake import FakeBackend, FakeProvider
from tether.testing._faults import FaultInjector


#: Opens a manager for a test: ``async with tether_manager_factory(...) as m``.
ManagerFactory = Callable[..., contextlib.AbstractAsyncContextManager[SessionManager]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "tether_providers",
        "installed tether providers (entry-point names) the tether_registry "
        "fixture holds beside 'fake'",
        type="args",
        default=[],
    )
    parser.addini(
        "tether_health_checks",
        "whether managers opened by tether's fixtures ping in the background",
        type="bool",
        default=True,
    )


@pytest.fixture(name="tether_clock")
def _tether_clock() -> ManualClock:
    """
    A manual clock for tether: time moves only by ``await clock.advance(s)``.

    The manager, the fake backend and the stores of the other tether fixtures
    all read it.
    """
    return ManualClock()


@pytest.fixture(name="tether_fake_backend")
def _tether_fake_backend(tether_clock: ManualClock) -> FakeBackend:
    """
    The fake service behind the ``"fake"`` provider, on ``tether_clock``: script
    its faults and read its ground truth (``live_ids()``) from your test.
    """
    return FakeBackend(clock=tether_clock.time)


@pytest.fixture(name="tether_registry")
def _tether_registry(request: pytest.FixtureRequest) -> ProviderRegistry:
    """
    A provider registry with ``"fake"`` (:class:`~tether.testing.FakeProvider`)
    and the installed providers the ``tether_providers`` ini option names;
    nothing else installed leaks in.
    """
    registry = ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    wanted = request.config.getini("tether_providers")
    if wanted:
        installed = default_registry()
        for name in wanted:
            registry.register(name, installed.load(name), replace=True)
    return registry


@pytest.fixture(name="tether_manager_factory")
def _tether_manager_factory(
    tether_registry: ProviderRegistry,
    tether_fake_backend: FakeBackend,
    tether_clock: ManualClock,
    request: pytest.FixtureRequest,
) -> ManagerFactory:
    """
    Opens managers on the test's registry, fake backend and clock::

        async def test_x(tether_manager_factory):
            async with tether_manager_factory(
                config={"sandbox": {"base_url": url, "api_key": "k"}},
                health_checks=True,
            ) as manager:
                ...

    Keyword arguments are :class:`~tether.SessionManager`'s; ``config`` is
    merged over the fake provider's. By default: retries without waiting,
    background pinging unless the ``tether_health_checks`` ini option says
    not, no
    environment variables read.
    """
    health_default = bool(request.config.getini("tether_health_checks"))

    @contextlib.asynccontextmanager
    async def factory(
        *, config: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncIterator[SessionManager]:
        options.setdefault("registry", tether_registry)
        options.setdefault("retry", RetryPolicy(attempts=3, wait_initial=0, wait_max=0))
        options.setdefault("clock", tether_clock)
        options.setdefault("environ", {})
        if "health" not in options:
            options.setdefault("health_checks", health_default)
        merged = {"fake": {"backend": tether_fake_backend}, **(config or {})}
        async with SessionManager(config=merged, **options) as manager:
            yield manager

    return factory


@pytest.fixture(name="tether_manager")
async def _tether_manager(
    tether_manager_factory: ManagerFactory,
) -> AsyncIterator[SessionManager]:
    """
    An open :class:`~tether.SessionManager` on ``tether_registry``,
    ``tether_fake_backend`` and ``tether_clock``: retrying (3 attempts)
    without waiting, reading no environment variables, pinging in the
    background unless the ``tether_health_checks`` ini option says not.
    """
    async with tether_manager_factory() as manager:
        yield manager


@pytest.fixture(name="tether_faults")
def _tether_faults() -> Iterator[Callable[..., FaultInjector]]:
    """
    Builds :class:`~tether.testing.FaultInjector` s for a test about faults::

        def test_x(tether_faults):
            faults = tether_faults(emulator.app, every=2)
            ...

    Arguments are :class:`~tether.testing.FaultInjector`'s. At teardown, the
    test errors if an injector it built injected no fault: a test of faults
    that saw none tested nothing (``rate=0.3`` on two requests often injects
    none; ``every=N`` fails every N-th request whatever the seed).
    """
    built: list[FaultInjector] = []

    def build(app: ASGIApp, *args: Any, **kwargs: Any) -> FaultInjector:
        injector = FaultInjector(app, *args, **kwargs)
        built.append(injector)
        return injector

    yield build
    idle = [i for i in built if not sum(i.injected.values())]
    if idle:
        lines = [
            f"rate={i.rate}, every={i.every}, seed={i.seed}: {i.seen} requests"
            for i in idle
        ]
        pytest.fail(
            "tether_faults: a FaultInjector injected no fault ("
            + "; ".join(lines)
            + "); give it a schedule (every=N) or a rate its requests reach",
            pytrace=False,
        )
