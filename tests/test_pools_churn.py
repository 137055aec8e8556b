"""
A pool under churn: many acquires and hand-backs while the service kills a
fifth of the idle sessions again and again. Safety only (no timing): no dead
session is handed out, none leaks, and neither the pool's size nor the
credential's limit is ever exceeded. ``python -m benchmarks pools`` measures
the same scenario's speed.
"""

from __future__ import annotations

import collections
import math
import random

import anyio
import pytest

import tether
from tether.testing import ManualClock, serve_asgi
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_churn_0123456789"
LIMIT = 16
MIN_IDLE = 10
MAX_SIZE = 14
ACQUIRES = 300
USERS = 10

# httpx leaves a cancelled request's body generator to the garbage collector,
# and trio's finalizer warns about it: httpx's, not tether's.
_HTTPX_BODY = (
    "ignore:Exception ignored in. <async_generator object ByteStream.__aiter__"
    ":pytest.PytestUnraisableExceptionWarning"
)


@pytest.mark.filterwarnings(_HTTPX_BODY)
async def test_churn_hands_out_no_dead_session_and_leaks_none() -> None:
    """
    300 acquires by 10 users (half of them running code, so their sessions
    are recycled) while a fifth of the idle sessions is killed every few
    milliseconds: every session handed out is live on the service, the
    service never holds more than the credential's limit nor the pool more
    than max_size, and after the manager's exit the service holds none.
    """
    clock = ManualClock()
    emulator = SandboxEmulator(clock=clock.time, api_keys=(KEY,), max_sessions=LIMIT)
    rng = random.Random(2026)  # noqa: S311 -- not for security
    counts: collections.Counter[str] = collections.Counter()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            registry=registry,
            config={"sandbox": {"api_key": KEY, "base_url": server.url, "timeout": 5}},
            retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
            clock=clock,
            health_checks=False,
            environ={},
        ) as manager:
            manager.provider("sandbox").set_capabilities(
                max_sessions_per_credential=LIMIT
            )
            pool = manager.pool(
                "sandbox", min_idle=MIN_IDLE, max_size=MAX_SIZE, timeout=60
            )
            remaining = [ACQUIRES]

            def sample() -> None:
                snap = pool.snapshot()
                held = snap.idle + snap.in_use + snap.creating + snap.closing
                counts["admission violations"] += len(emulator.live_sessions()) > LIMIT
                counts["size violations"] += held > MAX_SIZE

            async def user() -> None:
                while remaining[0] > 0:
                    remaining[0] -= 1
                    async with pool.acquire() as sb:
                        # Checked before any await: what was handed out.
                        counts["dead handed out"] += (
                            sb.remote_id not in emulator.live_sessions()
                        )
                        counts["acquired"] += 1
                        sample()
                        if rng.random() < 0.5:
                            await sb.execute("print(1)")
                        await anyio.sleep(rng.uniform(0, 0.002))
                    # Time between uses, so the pool has idle sessions.
                    await anyio.sleep(rng.uniform(0, 0.02))

            async def killer(stop: anyio.Event) -> None:
                while not stop.is_set():
                    idle = pool.idle_ids()
                    for sid in rng.sample(idle, k=math.ceil(len(idle) / 5)):
                        record = await manager.get(sid)
                        if record.remote_id in emulator.live_sessions():
                            emulator.kill(record.remote_id or "")
                            counts["killed"] += 1
                    sample()
                    await anyio.sleep(0.005)

            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer, stop)
                async with anyio.create_task_group() as users:
                    for _ in range(USERS):
                        users.start_soon(user)
                stop.set()
            snap = pool.snapshot()
        leaked = emulator.live_sessions()

    assert ACQUIRES == counts["acquired"]
    assert counts["killed"] > 0
    assert snap.replaced > 0
    assert 0 == counts["dead handed out"]
    assert 0 == counts["admission violations"]
    assert 0 == counts["size violations"]
    assert set() == leaked
