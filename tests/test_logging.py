"""
tether is quiet unless asked: its events go to structlog where the application
configured it, and otherwise to the standard library logger ``tether``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import structlog

import tether
from tether.testing import FakeBackend, FakeProvider


APP = textwrap.dedent(
    """
    import logging, sys
    import anyio, tether
    from tether.testing import FakeBackend, FakeProvider

    if sys.argv[1] == "configured":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")

    async def main():
        registry = tether.ProviderRegistry(entry_points=False)
        registry.register("fake", FakeProvider)
        backend = FakeBackend()
        async with tether.SessionManager(
            registry=registry, config={"fake": {"backend": backend}},
            retry=tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
            environ={},
        ) as manager:
            session = await manager.create("fake")
            backend.fail("ping", "unavailable", times=5)
            await manager.ping(session)

    anyio.run(main)
    """
)


def run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", APP, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_an_app_that_configured_nothing_sees_nothing() -> None:
    """
    Without any logging configuration, a create, a failed ping (warnings
    included) and the exit print nothing on stdout or stderr.
    """
    result = run("plain")

    assert ("", "") == (result.stdout, result.stderr)


def test_an_app_that_configured_logging_gets_tethers_events() -> None:
    """
    With the standard library configured, tether's events arrive on the
    ``tether`` logger at their levels, and stdout stays clean.
    """
    result = run("configured")

    assert "" == result.stdout
    assert "tether DEBUG tether.session.creating" in result.stderr
    assert "tether INFO tether.session.created provider='fake'" in result.stderr
    assert "tether WARNING tether.session.degraded" in result.stderr


def test_events_follow_structlog_where_the_app_configured_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """
    Where structlog is configured, tether's events go through it (and not
    also through the stdlib logger).
    """
    from tether._log import get_logger  # noqa: PLC0415

    with structlog.testing.capture_logs() as events, caplog.at_level("DEBUG"):
        get_logger("tether.plugin").info("tether.plugin.hello", n=1)

    assert [{"event": "tether.plugin.hello", "n": 1, "log_level": "info"}] == events
    assert "tether.plugin.hello" not in caplog.text


def test_stdlib_records_carry_the_event_and_its_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """
    Without structlog configured, each record names the event and carries its
    fields for structured handlers; secrets in them are masked.
    """
    structlog.reset_defaults()
    key = tether.Secret("sk-abcdef.masked-in-records")
    with caplog.at_level("INFO", logger="tether"):
        tether.abc.get_logger("tether.plugin").info(
            "tether.plugin.hello", provider="x", api_key=key.reveal()
        )

    [record] = [r for r in caplog.records if r.name == "tether.plugin"]
    assert "tether.plugin.hello" == record.tether_event
    assert {"provider": "x", "api_key": "***"} == record.tether_fields
    assert key.reveal() not in caplog.text


async def test_a_manager_logs_through_the_stdlib_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """
    A manager in an app that configured nothing logs to ``tether``.
    """
    structlog.reset_defaults()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    with caplog.at_level("INFO", logger="tether"):
        async with tether.SessionManager(
            registry=registry,
            config={"fake": {"backend": FakeBackend()}},
            health_checks=False,
            environ={},
        ) as manager:
            await manager.create("fake")

    assert "tether.session.created" in [
        getattr(r, "tether_event", None) for r in caplog.records
    ]
