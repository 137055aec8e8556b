"""
Bad input is refused with a typed error before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tether.exceptions import ConfigError, InvalidParameterError

from .conftest import make_manager


def _started(dirs: dict[str, str]) -> list[str]:
    # What a create leaves on disk before the kernel even starts.
    found = []
    for key in ("state_dir", "runtime_dir"):
        root = Path(dirs[key])
        if root.is_dir():
            found += [p.name for p in root.iterdir()]
    return found


async def test_without_bubblewrap_create_refuses(dirs: dict[str, str]) -> None:
    """
    Without bubblewrap, an isolated session (the default) is refused, naming
    isolation and the way out, and nothing starts.
    """
    async with make_manager({**dirs, "bwrap": "/nonexistent/bwrap"}) as manager:
        with pytest.raises(InvalidParameterError) as caught:
            await manager.create("local")
        records = await manager.list()

    assert "isolation" == caught.value.field
    assert "isolation='none'" in str(caught.value)
    assert "no security boundary" in str(caught.value)
    assert [] == records
    assert [] == _started(dirs)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"memory_mb": 1}, "memory_mb"),
        ({"memory_mb": "big"}, "memory_mb"),
        ({"memory_mb": True}, "memory_mb"),
        ({"processes": 2.5}, "processes"),
        ({"open_files": 10**9}, "open_files"),
        ({"network": "yes"}, "network"),
        ({"isolation": "docker"}, "isolation"),
        ({"gpu": 1}, "gpu"),
    ],
)
async def test_bad_parameters_are_refused(
    dirs: dict[str, str], params: dict[str, Any], field: str
) -> None:
    """
    Each bad create parameter raises InvalidParameterError naming it; no
    record is kept and nothing starts.
    """
    async with make_manager(dirs) as manager:
        with pytest.raises(InvalidParameterError) as caught:
            await manager.create("local", **params)
        records = await manager.list()

    assert field == caught.value.field
    assert [] == records
    assert [] == _started(dirs)


async def test_a_runtime_dir_too_long_for_sockets_is_refused(
    dirs: dict[str, str],
) -> None:
    """
    The kernel's unix sockets live in the runtime directory: one too long for
    them is refused before anything starts.
    """
    config = {**dirs, "runtime_dir": str(Path(dirs["runtime_dir"]) / ("x" * 120))}
    async with make_manager(config) as manager:
        with pytest.raises(InvalidParameterError) as caught:
            await manager.create("local", isolation="none")

    assert "runtime_dir" == caught.value.field
    assert [] == _started(dirs)


async def test_bad_config_is_refused(dirs: dict[str, str]) -> None:
    """
    A config value out of range is a ConfigError when the provider loads.
    """
    async with make_manager({**dirs, "start_timeout": 0}) as manager:
        with pytest.raises(ConfigError, match="start_timeout"):
            manager.provider("local")
