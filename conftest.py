"""
Shared by the core's tests and every first-party provider's tests.
"""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """
    Every async test runs on both anyio backends.
    """
    return str(request.param)


@pytest.fixture(autouse=True)
def _reset_structlog() -> None:
    """
    No test sees another's structlog configuration.
    """
    structlog.reset_defaults()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """
    Print the reliability suite's counts (lifecycles, faults, leaks, lost records).
    """
    import sys  # noqa: PLC0415

    for name, module in list(sys.modules.items()):
        counts = getattr(module, "CHAOS", None)
        if name.endswith("test_chaos") and counts:
            terminalreporter.section("reliability")
            for key, value in sorted(counts.items()):
                terminalreporter.write_line(f"{key}: {value}")
