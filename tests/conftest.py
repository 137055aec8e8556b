"""
Fixtures of the core's tests; the anyio backends come from the root conftest.py.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_helper(name: str) -> types.ModuleType:
    # --import-mode=importlib puts no test folder on sys.path: load by path.
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name(f"{name}.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


redis_server = _load_helper("redis_server")


@pytest.fixture(name="redis_url", scope="session")
def _redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """
    A redis-server for the whole test session, on a free loopback port.

    Skips the tests that need it when redis-server or redis-py is missing,
    except under CI (the ``CI`` environment variable), where that fails them.
    """
    problem = None
    if importlib.util.find_spec("redis") is None:
        problem = "redis-py is not installed (pip install 'tether[redis]')"
    server = None
    if problem is None:
        try:
            server = redis_server.start_redis(tmp_path_factory.mktemp("redis"))
        except redis_server.RedisUnavailableError as exc:
            problem = str(exc)
    if server is None:
        if redis_server.must_have_redis():
            pytest.fail(f"CI must run the Redis tests, but {problem}")
        pytest.skip(f"Redis tests need a Redis: {problem}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(name="own_redis")
def _own_redis(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    """
    A redis-server for this test alone, to stop or lock; skipped as redis_url is.
    """
    del redis_url  # requested for its skip-or-fail decision only
    server = redis_server.start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()
