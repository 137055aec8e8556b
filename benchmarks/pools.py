"""
Warm pools: acquiring a pooled session against creating one cold, and a pool
under churn.

The sandbox emulator answers each create after ``STARTUP`` seconds, as a VM
that boots. For the latency part it runs under uvicorn in its own process; for
the churn part in this one, on a loopback socket, since the churn needs its
``kill()`` and ``live_sessions()``.

1. Latency: a cold ``create`` (baseline, same run) against ``acquire()`` from a
   warm pool (the idle session checked, pinged, handed out), and without the
   ping. Target: warm p99 at most 1 % of the cold create's median.
2. Churn: 100 acquire/release a second for a while (a tenth of the users run
   code, so their session is closed and replaced), ``min_idle=10``, and every
   second the service kills a fifth of the idle sessions. Counted: sessions
   handed out dead (not live on the service at hand-out), sessions left live
   on the service after the manager's exit (leaks), samples where the service
   held more than the credential's limit or the pool more than ``max_size``
   (admission violations); timed: the refill lag (from the pool falling short
   of ``min_idle`` to a refill landing) and acquire latency under churn.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import time
from typing import Any

import anyio

import tether
from benchmarks._common import Result, Target, median, percentile, quiet_logs, table
from benchmarks._server import KEY as SERVER_KEY
from benchmarks._server import serve_emulator
from tether.testing import serve_asgi


KEY = "instavm_sk_bench_pools_0123456789"
STARTUP = 0.5
LIMIT = 50
MAX_SIZE = 40
MIN_IDLE = 10
RATE = 100.0  # acquires a second
KILL_SHARE = 0.2  # of the idle sessions, every second


def _manager(url: str, key: str = KEY, **options: Any) -> tether.SessionManager:
    from tether_sandbox import SandboxProvider  # noqa: PLC0415

    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    return tether.SessionManager(
        registry=registry,
        config={"sandbox": {"api_key": key, "base_url": url, "timeout": 10}},
        environ={},
        **options,
    )


async def _latency(url: str, quick: bool, figures: dict[str, Any]) -> None:
    from tether_sandbox import SandboxProvider  # noqa: PLC0415

    colds = 5 if quick else 12
    warms = 200 if quick else 1000
    async with _manager(url, SERVER_KEY, health_checks=False) as manager:
        # Warm up the connection pool and the provider.
        await manager.close(await manager.create("sandbox"))
        cold: list[float] = []
        for _ in range(colds):
            t0 = time.perf_counter()
            session = await manager.create("sandbox", vcpu_count=2)
            cold.append(time.perf_counter() - t0)
            await manager.close(session)
        for label, ping in (("warm", True), ("warm_no_ping", False)):
            pool = manager.pool(
                SandboxProvider,
                vcpu_count=2,
                min_idle=4,
                max_size=8,
                ping_on_acquire=ping,
                name=label,
            )
            with anyio.fail_after(60):
                await pool.wait_ready()
            warm: list[float] = []
            for _ in range(warms):
                t0 = time.perf_counter()
                async with pool.acquire():
                    warm.append(time.perf_counter() - t0)
            figures[f"{label}_ms_p50"] = median(warm) * 1000
            figures[f"{label}_ms_p99"] = percentile(warm, 99) * 1000
    figures["cold_ms_p50"] = median(cold) * 1000
    figures["cold_ms_p99"] = percentile(cold, 99) * 1000
    figures["warm_p99_over_cold_p50"] = figures["warm_ms_p99"] / figures["cold_ms_p50"]
    figures["warm_no_ping_p99_over_cold_p50"] = (
        figures["warm_no_ping_ms_p99"] / figures["cold_ms_p50"]
    )


async def _churn(url: str, emulator: Any, quick: bool, figures: dict[str, Any]) -> None:
    from tether_sandbox import SandboxProvider  # noqa: PLC0415

    seconds = 4.0 if quick else 15.0
    rng = random.Random(19)
    counts: collections.Counter[str] = collections.Counter()
    lags: list[float] = []
    acquire_s: list[float] = []
    async with _manager(
        url, health=tether.HealthPolicy(interval=1.0, jitter=0.1)
    ) as manager:
        manager.provider("sandbox").set_capabilities(max_sessions_per_credential=LIMIT)
        pool = manager.pool(
            SandboxProvider, min_idle=MIN_IDLE, max_size=MAX_SIZE, timeout=30
        )
        with anyio.fail_after(60):
            await pool.wait_ready()

        def sample() -> None:
            snap = pool.snapshot()
            held = snap.idle + snap.in_use + snap.creating + snap.closing
            counts["samples"] += 1
            counts["admission_violations"] += (
                len(emulator.live_sessions()) > LIMIT or held > MAX_SIZE
            )

        async def use() -> None:
            t0 = time.perf_counter()
            try:
                async with pool.acquire() as sb:
                    acquire_s.append(time.perf_counter() - t0)
                    counts["acquired"] += 1
                    counts["dead_handed_out"] += (
                        sb.remote_id not in emulator.live_sessions()
                    )
                    sample()
                    if rng.random() < 0.1:
                        await sb.execute("print(1)")
                    await anyio.sleep(rng.uniform(0.005, 0.015))
            except tether.TetherError as exc:
                counts[f"error_{type(exc).__name__}"] += 1

        async def killer() -> None:
            while True:
                await anyio.sleep(1.0)
                idle = pool.idle_ids()
                for sid in rng.sample(idle, k=math.ceil(len(idle) * KILL_SHARE)):
                    remote = (await manager.get(sid)).remote_id
                    if remote in emulator.live_sessions():
                        emulator.kill(remote or "")
                        counts["killed"] += 1
                sample()

        async def lag_watch() -> None:
            async with manager.events() as events:
                async for event in events:
                    if event.kind is tether.EventKind.POOL_REFILLED:
                        lags.append(float(event.data["lag"]))  # noqa: PERF401 -- a stream

        async with anyio.create_task_group() as background:
            background.start_soon(killer)
            background.start_soon(lag_watch)
            started = time.perf_counter()
            async with anyio.create_task_group() as users:
                n = 0
                while (now := time.perf_counter() - started) < seconds:
                    users.start_soon(use)
                    n += 1
                    await anyio.sleep(max(0.0, n / RATE - now))
            figures["churn_rate_per_s"] = counts["acquired"] / (
                time.perf_counter() - started
            )
            background.cancel_scope.cancel()
        snap = pool.snapshot()
    figures["churn_leaks"] = len(emulator.live_sessions())
    figures["churn_seconds"] = seconds
    figures["churn_acquired"] = counts["acquired"]
    figures["churn_killed"] = counts["killed"]
    figures["churn_replaced"] = snap.replaced
    figures["churn_recycled"] = snap.recycled
    figures["churn_refills"] = snap.refills
    figures["churn_exhausted"] = snap.exhausted
    figures["churn_dead_handed_out"] = counts["dead_handed_out"]
    figures["churn_admission_violations"] = counts["admission_violations"]
    figures["churn_samples"] = counts["samples"]
    figures["churn_errors"] = {
        k: v for k, v in counts.items() if k.startswith("error_")
    }
    figures["churn_acquire_ms_p50"] = median(acquire_s) * 1000
    figures["churn_acquire_ms_p99"] = percentile(acquire_s, 99) * 1000
    figures["refill_lag_ms_p50"] = median(lags) * 1000
    figures["refill_lag_ms_p99"] = percentile(lags, 99) * 1000


async def _main(quick: bool) -> Result:
    from tether_sandbox.emulator import SandboxEmulator  # noqa: PLC0415

    quiet_logs(logging.ERROR)
    result = Result(name="pools")
    figures: dict[str, Any] = {"startup_latency_s": STARTUP}
    # Latency: the emulator in its own process (its CPU is not ours).
    with serve_emulator(startup_latency=STARTUP) as url:
        await _latency(url, quick, figures)
    # Churn: in this process, for the service's kill() and live_sessions().
    churn = SandboxEmulator(
        api_keys=(KEY,), startup_latency=STARTUP, max_sessions=LIMIT
    )
    async with serve_asgi(churn.app) as server:
        await _churn(server.url, churn, quick, figures)
    result.figures = f = figures
    result.tables.append(
        f"sandbox emulator (uvicorn subprocess; in-process for churn), "
        f"start-up latency {STARTUP}s\n"
        + table(
            ["acquire", "p50 ms", "p99 ms"],
            [
                ["cold create (baseline)", f["cold_ms_p50"], f["cold_ms_p99"]],
                ["warm pool, pinged", f["warm_ms_p50"], f["warm_ms_p99"]],
                [
                    "warm pool, no ping",
                    f["warm_no_ping_ms_p50"],
                    f["warm_no_ping_ms_p99"],
                ],
                [
                    "under churn",
                    f["churn_acquire_ms_p50"],
                    f["churn_acquire_ms_p99"],
                ],
                ["refill lag", f["refill_lag_ms_p50"], f["refill_lag_ms_p99"]],
            ],
        )
    )
    result.tables.append(
        f"churn: {f['churn_seconds']:g}s at {RATE:g}/s "
        f"(achieved {f['churn_rate_per_s']:.1f}/s), min_idle {MIN_IDLE}, "
        f"max_size {MAX_SIZE}, credential limit {LIMIT}, "
        f"{KILL_SHARE:.0%} of idle killed each second\n"
        + table(
            ["count", "n"],
            [
                ["acquired", f["churn_acquired"]],
                ["killed by the service", f["churn_killed"]],
                ["replaced (found unfit)", f["churn_replaced"]],
                ["recycled (used, closed)", f["churn_recycled"]],
                ["refills", f["churn_refills"]],
                ["exhausted", f["churn_exhausted"]],
                ["handed out dead", f["churn_dead_handed_out"]],
                ["leaked after exit", f["churn_leaks"]],
                ["admission violations", f["churn_admission_violations"]],
                ["errors", f["churn_errors"] or 0],
            ],
        )
    )
    result.targets.extend(
        [
            Target(
                "warm acquire p99 / cold create p50",
                f["warm_p99_over_cold_p50"] * 100,
                1.0,
                unit=" %",
            ),
            Target(
                "warm acquire without the ping, p99 / cold create p50",
                f["warm_no_ping_p99_over_cold_p50"] * 100,
                1.0,
                unit=" %",
            ),
            Target("churn: handed out dead", f["churn_dead_handed_out"], 0),
            Target("churn: leaks", f["churn_leaks"], 0),
            Target("churn: admission violations", f["churn_admission_violations"], 0),
        ]
    )
    result.notes.append(
        "Under churn the emulator shares this process's CPU (its kill() and "
        "live_sessions() are the ground truth); the refill lag includes the "
        f"{STARTUP}s start-up latency of each create."
    )
    return result


def run(quick: bool = False) -> Result:
    return anyio.run(_main, quick, backend="asyncio")
