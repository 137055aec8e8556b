"""
Failover: the primary refuses connections (a closed port), the secondary is
the sandbox emulator (uvicorn, in a subprocess).

Figure: the time until the session is ACTIVE on the secondary, minus the
backoff the retry policy actually slept on the primary (recorded by a clock
that sums its sleeps), so what remains is tether's own cost of failing over.
"""

from __future__ import annotations

import logging
import time

import anyio

import tether
from benchmarks._common import (
    Result,
    Target,
    free_port,
    median,
    percentile,
    quiet_logs,
    table,
)
from benchmarks._server import KEY, serve_emulator
from tether._clock import SystemClock


class _SleepCountingClock(SystemClock):
    def __init__(self) -> None:
        self.slept = 0.0

    async def sleep(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)
        await super().sleep(seconds)


def _registry() -> tether.ProviderRegistry:
    from tether_sandbox import SandboxProvider  # noqa: PLC0415

    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("primary", SandboxProvider)
    registry.register("secondary", SandboxProvider)
    return registry


async def _main(quick: bool) -> Result:
    quiet_logs(logging.ERROR)  # each failover logs warnings, by design
    tries = 10 if quick else 30
    result = Result(name="failover")
    extra: list[float] = []
    totals: list[float] = []
    slept: list[float] = []
    with serve_emulator() as url:
        closed = f"http://127.0.0.1:{free_port()}"
        clock = _SleepCountingClock()
        policy = tether.FailoverPolicy(
            candidates=[
                tether.Candidate(provider="primary"),
                tether.Candidate(provider="secondary"),
            ],
            attempts_per_candidate=2,
        )
        async with tether.SessionManager(
            registry=_registry(),
            config={
                "primary": {"api_key": KEY, "base_url": closed, "timeout": 5},
                "secondary": {"api_key": KEY, "base_url": url, "timeout": 5},
            },
            clock=clock,
            health_checks=False,
            retry=tether.RetryPolicy(attempts=4, wait_initial=0.05, wait_max=0.2),
            # Keep the primary's breaker closed, so every try fails over anew.
            breakers=tether.BreakerPolicy(failure_threshold=10_000),
        ) as manager:
            # Warm up: the secondary's connection pool, both providers loaded.
            warm = await manager.create(policy)
            await manager.close(warm)
            for _ in range(tries):
                clock.slept = 0.0
                t0 = time.perf_counter()
                session = await manager.create(policy)
                total = time.perf_counter() - t0
                assert session.provider == "secondary"
                assert session.state is tether.SessionState.ACTIVE
                totals.append(total)
                slept.append(clock.slept)
                extra.append(total - clock.slept)
                await manager.close(session)
    result.figures = {
        "tries": tries,
        "total_ms_median": median(totals) * 1000,
        "backoff_ms_median": median(slept) * 1000,
        "failover_ms_median": median(extra) * 1000,
        "failover_ms_p99": percentile(extra, 99) * 1000,
        "failover_ms_max": max(extra) * 1000,
    }
    f = result.figures
    result.tables.append(
        "primary: a closed port (2 attempts, random exponential backoff, 50 ms initial, 200 ms max);\nsecondary: the emulator\n"
        + table(
            ["figure", "ms"],
            [
                ["until ACTIVE on the secondary (median)", f["total_ms_median"]],
                ["backoff slept (median)", f["backoff_ms_median"]],
                ["failover minus backoff (median)", f["failover_ms_median"]],
                ["failover minus backoff (p99)", f["failover_ms_p99"]],
                ["failover minus backoff (max)", f["failover_ms_max"]],
            ],
        )
    )
    result.targets.append(
        Target(
            "failover time minus backoff, p99", f["failover_ms_p99"], 50.0, unit=" ms"
        )
    )
    return result


def run(quick: bool = False) -> Result:
    return anyio.run(_main, quick, backend="asyncio")
