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
    ):
        assert name in text
    assert "no docstring available" not in text.split("tether_clock", 1)[1]
