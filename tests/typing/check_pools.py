"""
Checked by mypy --strict (``nox -s mypy``), never run: pools hand out the
provider's typed handle, without casts.
"""

from __future__ import annotations

from typing import Any, assert_type

import tether
from tether.abc import SessionHandle, SyncSessionHandle
from tether_sandbox import (
    ExecutionResult,
    SandboxHandle,
    SandboxProvider,
    SyncSandboxHandle,
)


async def pools(manager: tether.SessionManager) -> None:
    pool = manager.pool(SandboxProvider, vcpu_count=2, min_idle=2, max_size=10)
    assert_type(pool, tether.Pool[SandboxHandle])
    async with pool.acquire() as sb:
        assert_type(sb, SandboxHandle)
        assert_type(await sb.execute("print(1)"), ExecutionResult)
    assert_type(pool.snapshot(), tether.PoolSnapshot)

    by_name = manager.pool("sandbox", min_idle=1)
    async with by_name.acquire() as handle:
        assert_type(handle, SessionHandle[Any])


def sync_pools(manager: tether.SyncSessionManager) -> None:
    pool = manager.pool(SandboxProvider, vcpu_count=2, min_idle=2)
    assert_type(pool, tether.SyncPool[SyncSandboxHandle])
    with pool.acquire() as sb:
        assert_type(sb, SyncSandboxHandle)
        assert_type(sb.execute("print(1)"), ExecutionResult)
    with manager.pool("sandbox").acquire() as handle:
        assert_type(handle, SyncSessionHandle[Any])
