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
