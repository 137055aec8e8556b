"""
Scale: many sessions in one process under health pinging (FakeProvider, no latency).

* memory per session, by tracemalloc (what Python allocated, after a full
  ping cycle), with the fake service's own records subtracted; the RSS delta
  (measured in a run without tracemalloc) is shown beside it;
* manager CPU for one full cycle of pings of every session (real clock, short
  interval; process CPU time per ping x sessions), as a share of one core at
  a 30 s interval;
* expiry lateness on the real clock: when the EXPIRED event is observed minus
  ``expires_at``.
"""

from __future__ import annotations

import gc
import logging
import time
import tracemalloc
from typing import Any

import anyio

import tether
from benchmarks._common import Result, Target, percentile, quiet_logs, rss_bytes, table
from tether.testing import FakeBackend, FakeProvider


def _registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    return registry


async def _create_many(
    manager: tether.SessionManager, count: int, lifetime: Any = None
) -> list[tether.Session]:
    sessions: list[tether.Session] = []
    per_worker = count // 50

    async def worker(w: int) -> None:
        for i in range(per_worker):
            life = lifetime(w * per_worker + i) if callable(lifetime) else lifetime
            sessions.append(await manager.create("fake", lifetime=life))

    async with anyio.create_task_group() as tg:
        for w in range(50):
            tg.start_soon(worker, w)
    return sessions


async def _memory(count: int) -> dict[str, Any]:
    """
    tracemalloc: bytes per session, tether's and the fake service's.
    """
    backend = FakeBackend()
    gc.collect()
    tracemalloc.start()
    async with tether.SessionManager(
        registry=_registry(),
        config={"fake": {"backend": backend}},
        health=tether.HealthPolicy(interval=2.0),
        on_exit="keep",
    ) as manager:
        manager.provider("fake")
        await _create_many(manager, 50)  # warm caches, interned strings
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        await _create_many(manager, count, lifetime=3600.0)
        # One full ping cycle, so each session holds its last health.
        with anyio.move_on_after(60):
            while backend.calls["ping"] < count + 50:  # noqa: ASYNC110 -- polling a counter
                await anyio.sleep(0.2)
        pings = backend.calls["ping"]
        gc.collect()
        full, _ = tracemalloc.get_traced_memory()
        # The fake service's records stand for the remote side: drop them.
        # (Pings after this find no session: LOST, logged at WARNING.)
        quiet_logs(logging.ERROR)
        backend.sessions.clear()
        gc.collect()
        ours, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        tracked = len(manager.snapshot().sessions)
    return {
        "sessions": count,
        "tracked": tracked,
        "pings_in_cycle": pings,
        "tether_bytes_per_session": (ours - before) / count,
        "provider_bytes_per_session": (full - ours) / count,
    }


async def _cpu(count: int, interval: float) -> dict[str, Any]:
    """
    Real clock: CPU per full ping cycle, and the RSS delta of *count* sessions.
    """
    backend = FakeBackend()
    async with tether.SessionManager(
        registry=_registry(),
        config={"fake": {"backend": backend}},
        health=tether.HealthPolicy(interval=interval),
        on_exit="keep",
    ) as manager:
        manager.provider("fake")
        await _create_many(manager, 50)
        gc.collect()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        await _create_many(manager, count, lifetime=3600.0)
        create_s = time.perf_counter() - t0
        gc.collect()
        rss1 = rss_bytes()
        # Let pinging reach its steady state, then measure whole cycles.
        await anyio.sleep(interval * 1.2)
        pings0, cpu0, wall0 = (
            backend.calls["ping"],
            time.process_time(),
            time.perf_counter(),
        )
        await anyio.sleep(interval * 2)
        pings = backend.calls["ping"] - pings0
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
    per_ping = cpu / pings if pings else float("nan")
    return {
        "sessions": count,
        "interval_s": interval,
        "create_per_s": count / create_s,
        "rss_bytes_per_session": (rss1 - rss0) / count,
        "pings_measured": pings,
        "pings_expected": (count + 50) * wall / interval,
        "cpu_s_per_ping": per_ping,
        "cpu_s_per_cycle": per_ping * count,
        "cpu_share_at_30s": per_ping * count / 30.0,
    }


async def _lateness(count: int, spread: float) -> dict[str, Any]:
    """
    Real clock: lifetimes spread over *spread* seconds; lateness of EXPIRED.
    """
    backend = FakeBackend()
    late: list[float] = []
    async with tether.SessionManager(
        registry=_registry(),
        config={"fake": {"backend": backend}},
        health=tether.HealthPolicy(interval=2.0),
    ) as manager:
        manager.provider("fake")
        start = time.time() + 3.0  # creating takes well under this

        def lifetime(i: int) -> float:
            return max(1.0, start + spread * i / count - time.time())

        async with manager.events(buffer=count * 4) as events:
            await _create_many(manager, count, lifetime=lifetime)
            with anyio.move_on_after(3.0 + spread + 5.0):
                async for event in events:
                    if event.kind is tether.EventKind.EXPIRED and event.session:
                        seen = time.time()
                        assert event.session.expires_at is not None
                        late.append(seen - event.session.expires_at.timestamp())
                        if len(late) >= count:
                            break
    return {
        "sessions": count,
        "spread_s": spread,
        "expired_seen": len(late),
        "lateness_p50_ms": percentile(late, 50) * 1000,
        "lateness_p99_ms": percentile(late, 99) * 1000,
        "lateness_max_ms": max(late) * 1000 if late else None,
    }


async def _main(quick: bool) -> Result:
    quiet_logs()
    count = 10_000
    result = Result(name="scale")
    # RSS first: after the tracemalloc run, freed memory would be reused.
    cpu = await _cpu(count, interval=3.0)
    mem = await _memory(count)
    quiet_logs()
    late = await _lateness(2_000, spread=3.0 if quick else 5.0)
    result.figures = {"memory": mem, "cpu": cpu, "expiry": late}
    result.tables.append(
        table(
            ["figure", "value"],
            [
                ["sessions", count],
                ["tether bytes/session (tracemalloc)", mem["tether_bytes_per_session"]],
                [
                    "fake service bytes/session (tracemalloc)",
                    mem["provider_bytes_per_session"],
                ],
                [
                    "RSS delta bytes/session (incl. service)",
                    cpu["rss_bytes_per_session"],
                ],
                ["creates/s (50 concurrent)", cpu["create_per_s"]],
                [
                    "pings measured / expected",
                    f"{cpu['pings_measured']} / {cpu['pings_expected']:.0f}",
                ],
                ["CPU us per ping", cpu["cpu_s_per_ping"] * 1e6],
                ["CPU s per cycle of 10k pings", cpu["cpu_s_per_cycle"]],
                [
                    "expiry: sessions / seen EXPIRED",
                    f"{late['sessions']} / {late['expired_seen']}",
                ],
                ["expiry lateness p50 ms", late["lateness_p50_ms"]],
                ["expiry lateness p99 ms", late["lateness_p99_ms"]],
                ["expiry lateness max ms", late["lateness_max_ms"]],
            ],
        )
    )
    result.targets += [
        Target(
            "tether memory per session (tracemalloc, service data excluded)",
            mem["tether_bytes_per_session"] / 1024,
            4.0,
            unit=" KiB",
        ),
        Target(
            "manager CPU per 10k-ping cycle at a 30 s interval",
            cpu["cpu_share_at_30s"] * 100,
            5.0,
            unit=" %",
        ),
        Target("expiry lateness p99", late["lateness_p99_ms"], 50.0, unit=" ms"),
    ]
    if cpu["pings_measured"] < 0.95 * cpu["pings_expected"]:
        result.notes.append(
            f"MISSED: at a {cpu['interval_s']:g} s interval the manager fell behind "
            f"({cpu['pings_measured']} of {cpu['pings_expected']:.0f} pings); "
            "CPU per ping is measured over the pings made"
        )
    if late["expired_seen"] < late["sessions"]:
        result.notes.append(
            f"MISSED: only {late['expired_seen']} of {late['sessions']} expiries were observed"
        )
    return result


def run(quick: bool = False) -> Result:
    return anyio.run(_main, quick, backend="asyncio")
