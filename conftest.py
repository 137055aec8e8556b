"""
Shared by the core's tests and every first-party provider's tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import structlog.testing


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


@pytest.fixture(autouse=True)
def _no_secret_in_logs(
    _reset_structlog: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """
    Every test's log events are scanned for every secret it made: none may appear.

    Each ``tether.Secret`` built during the test is remembered (by wrapping its
    constructor); every event logged through structlog is captured; after the
    test, no secret's value may occur anywhere in them.
    """
    from tether import Secret  # noqa: PLC0415

    made: list[str] = []
    original = Secret.__init__

    def remembering(self: Secret, value: str | Secret) -> None:
        original(self, value)
        made.append(self.reveal())

    monkeypatch.setattr(Secret, "__init__", remembering)
    with structlog.testing.capture_logs() as events:
        yield
    blob = repr(events)
    leaked = {s for s in made if len(s) >= 8 and s in blob}
    assert not leaked, f"{len(leaked)} secret(s) appeared in log events"


def _chaos_counts() -> dict[str, dict[str, int]]:
    import sys  # noqa: PLC0415

    return {
        name.rsplit(".", 1)[-1]: dict(counts)
        for name, module in list(sys.modules.items())
        if "test_chaos" in name and (counts := getattr(module, "CHAOS", None))
    }


# The reliability counts the pytest-xdist workers sent back, by test module.
_FROM_WORKERS: list[dict[str, dict[str, int]]] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts over
        workeroutput["tether_chaos"] = _chaos_counts()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    counts = getattr(node, "workeroutput", {}).get("tether_chaos")
    if counts:
        _FROM_WORKERS.append(counts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """
    Print the reliability suite's counts (lifecycles, faults, leaks, lost
    records), summed over xdist workers when there are any.
    """
    import collections  # noqa: PLC0415

    totals: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for part in [_chaos_counts(), *_FROM_WORKERS]:
        for module, counts in part.items():
            totals[module].update(counts)
    for _module, counts in sorted(totals.items()):
        terminalreporter.section("reliability")
        for key, value in sorted(counts.items()):
            terminalreporter.write_line(f"{key}: {value}")
