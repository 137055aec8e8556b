"""
The suite-wide secret scan (root conftest.py) fails a test that logs a secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest


pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).parent.parent / "conftest.py"


def test_a_logged_secret_fails_the_test(pytester: pytest.Pytester) -> None:
    """
    A test that logs the value of a Secret it made fails, naming the leak; one
    that logs only the masked secret passes.
    """
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(
        """
        import structlog
        import tether

        def test_leaks():
            key = tether.Secret("sk-abcdef.leaked-value")
            structlog.get_logger().info("oops", key=key.reveal())

        def test_masked():
            key = tether.Secret("sk-abcdef.leaked-value")
            structlog.get_logger().info("fine", key=key)
        """
    )

    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "leaks or masked")

    # The leaking test runs, then its teardown check errors.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR*test_leaks*"])
    result.stdout.fnmatch_lines(["*secret(s) appeared in log events*"])
