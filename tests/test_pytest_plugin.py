"""
tether's pytest plugin, as a user's test suite meets it.
"""

from __future__ import annotations

import pytest


pytest_plugins = ["pytester"]


def test_the_factory_and_the_ini_options(pytester: pytest.Pytester) -> None:
    """
    ``tether_providers`` puts installed providers in ``tether_registry``;
    ``tether_manager_factory`` opens managers with the test's own config and
    policies; ``tether_health_checks = false`` turns background pings off.
    """
    pytester.makeini(
        """
        [pytest]
        anyio_mode = auto
        tether_providers = sandbox
        tether_health_checks = false
        """
    )
    pytester.makepyfile(
        """
        import pytest
        import tether

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        def test_registry(tether_registry):
            assert ["fake", "sandbox"] == tether_registry.names()

        async def test_factory(tether_manager_factory, tether_fake_backend, tether_clock):
            async with tether_manager_factory(
                retry=tether.RetryPolicy(attempts=1)
            ) as manager:
                session = await manager.create("fake")
                await tether_clock.advance(3600)
                assert 0 == tether_fake_backend.calls["ping"]
                assert session.remote_id in tether_fake_backend.live_ids()
            assert set() == tether_fake_backend.live_ids()
        """
    )
    result = pytester.runpytest("-p", "anyio", "-q")

    result.assert_outcomes(passed=2)


def test_every_fixture_says_what_it_is(pytester: pytest.Pytester) -> None:
    """
    ``pytest --fixtures`` shows a docstring for each of tether's fixtures.
    """
    result = pytester.runpytest("--fixtures")
    text = result.stdout.str()

    for name in (
        "tether_clock",
        "tether_fake_backend",
        "tether_registry",
        "tether_manager_factory",
        "tether_manager",
        "tether_faults",
    ):
        assert name in text
    assert "no docstring available" not in text.split("tether_clock", 1)[1]


_FAULT_TESTS = """
import httpx
import pytest

from tether.testing import Fault, serve_asgi


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _two_requests(faults):
    async with serve_asgi(faults) as server, httpx.AsyncClient() as client:
        return [(await client.get(server.url)).status_code for _ in range(2)]


async def test_rate(tether_faults):
    faults = tether_faults(ok, rate=0.3, seed=0, kinds={Fault.SERVER_ERROR})
    await _two_requests(faults)


async def test_every(tether_faults):
    faults = tether_faults(ok, every=2, kinds={Fault.SERVER_ERROR})
    assert [200, 503] == await _two_requests(faults)
"""


def test_tether_faults_fails_a_test_whose_injector_injected_nothing(
    pytester: pytest.Pytester,
) -> None:
    """
    An injector from ``tether_faults`` that injected no fault (``rate=0.3``,
    seed 0, two requests: none) errors the test at teardown, saying why; one
    on a schedule (``every=2``) fails the second request and passes.
    """
    pytester.makeini("[pytest]\nanyio_mode = auto\n")
    pytester.makepyfile(_FAULT_TESTS)

    result = pytester.runpytest("-p", "anyio", "-q")

    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_rate*",
            (
                "tether_faults: a FaultInjector injected no fault "
                "(rate=0.3, every=0, seed=0: 2 requests)*"
            ),
        ]
    )
