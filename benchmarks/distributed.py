"""
Distributed: N worker processes sharing one Redis store holding M sessions.

Phases, each a fresh set of worker processes against one redis-server and the
sandbox emulator (uvicorn subprocess, which counts status requests per
session):

1. create: each worker creates M/N sessions (concurrently); create throughput.
2. watch: each worker attaches every live session in the store (any worker
   may take any session over) and pings in the background at a 1 s interval;
   duplicate pings per interval are counted at the emulator.
3. admit: a provider allowing L live sessions per credential; every worker
   tries to create more at once (admission "reject"); admissions beyond L
   are violations.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, ClassVar

import anyio

import tether
from benchmarks._common import Result, Target, free_port, quiet_logs, table, wait_port
from benchmarks._server import KEY, serve_emulator


LIMIT = 5
INTERVAL = 1.0


def _registry() -> tether.ProviderRegistry:
    import attrs  # noqa: PLC0415

    from tether.abc import Capabilities  # noqa: PLC0415
    from tether_sandbox import SandboxProvider  # noqa: PLC0415

    class LimitedSandbox(SandboxProvider):
        capabilities: ClassVar[Capabilities] = attrs.evolve(
            SandboxProvider.capabilities, max_sessions_per_credential=LIMIT
        )

    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    registry.register("limited", LimitedSandbox)
    return registry


async def _worker(
    mode: str, redis_url: str, url: str, count: int, duration: float
) -> None:
    from tether.stores import RedisStore  # noqa: PLC0415

    quiet_logs()
    # The store's own pool is bounded and blocking: a few hundred concurrent
    # background pings wait for one of its connections.
    store = RedisStore(redis_url)
    config = {
        name: {"api_key": KEY, "base_url": url, "timeout": 30}
        for name in ("sandbox", "limited")
    }
    out: dict[str, Any] = {"mode": mode}
    async with tether.SessionManager(
        registry=_registry(),
        store=store,
        config=config,
        health=tether.HealthPolicy(interval=INTERVAL, enabled=mode == "watch"),
        admission=tether.AdmissionPolicy(mode="reject"),
        on_exit="keep",
    ) as manager:
        if mode == "create":
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(20):

                    async def make(n: int = count // 20) -> None:
                        for _ in range(n):
                            await manager.create("sandbox")

                    tg.start_soon(make)
            out["created"] = count // 20 * 20
            out["seconds"] = time.perf_counter() - t0
        elif mode == "watch":
            live = await manager.list(
                provider="sandbox", state=tether.SessionState.ACTIVE
            )
            for s in live:
                await manager.attach(s.id)
            out["attached"] = len(live)
            print(json.dumps(out), flush=True)
            out["mode"] = "watched"
            await anyio.sleep(duration)
        else:
            ok = refused = 0

            async def admit() -> None:
                nonlocal ok, refused
                try:
                    await manager.create("limited")
                    ok += 1
                except tether.exceptions.AdmissionError:
                    refused += 1

            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(admit)
            out["admitted"] = ok
            out["refused"] = refused
    await store.aclose()
    print(json.dumps(out), flush=True)


def _spawn(
    mode: str, redis_url: str, url: str, count: int, duration: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "benchmarks.distributed",
            mode,
            redis_url,
            url,
            str(count),
            str(duration),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _stats(url: str, reset: bool = False) -> dict[str, Any]:
    path = "/_bench/reset" if reset else "/_bench/stats"
    with urllib.request.urlopen(url + path, timeout=10) as r:  # noqa: S310
        return json.loads(r.read())


def _main(quick: bool) -> Result:
    result = Result(name="distributed")
    try:
        import redis  # noqa: F401, PLC0415

        from tether.stores import RedisStore  # noqa: F401, PLC0415
    except ImportError as exc:
        result.skipped = f"no RedisStore yet ({exc})"
        return result
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        result.skipped = "redis-server is not installed"
        return result
    workers = 3
    sessions = 300 if quick else 1200
    window = 3.0 if quick else 5.0
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc = subprocess.Popen(  # noqa: S603
            [
                server_bin,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_port(port)
            redis_url = f"redis://127.0.0.1:{port}/0"
            with serve_emulator() as url:
                # 1. create
                t0 = time.perf_counter()
                procs = [
                    _spawn("create", redis_url, url, sessions // workers, 0)
                    for _ in range(workers)
                ]
                outs = [
                    json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1])
                    for p in procs
                ]
                wall = time.perf_counter() - t0
                created = sum(o["created"] for o in outs)
                slowest = max(o["seconds"] for o in outs)
                # 2. watch
                procs = [
                    _spawn("watch", redis_url, url, 0, window + 4 * INTERVAL)
                    for _ in range(workers)
                ]
                attached = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
                time.sleep(INTERVAL * 1.5)  # every session has been scheduled
                _stats(url, reset=True)
                time.sleep(window)
                stats = _stats(url)
                for p in procs:
                    p.communicate(timeout=120)
                pings = sum(stats["pings"].values())
                intervals = window / INTERVAL
                expected = created * intervals
                # One pinger makes at most this many pings in the window (the
                # interval is jittered by up to 10 %): more means two pinged.
                bound = int(window / (INTERVAL * 0.9)) + 1
                beyond = sum(max(0, n - bound) for n in stats["pings"].values())
                duplicates = beyond / intervals
                per_session = max(stats["pings"].values()) if stats["pings"] else 0
                # 3. admit
                procs = [_spawn("admit", redis_url, url, 20, 0) for _ in range(workers)]
                admits = [
                    json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1])
                    for p in procs
                ]
                admitted = sum(a["admitted"] for a in admits)
        finally:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    violations = max(0, admitted - LIMIT)
    if pings < 0.95 * expected:
        result.notes.append(
            f"MISSED: pinging fell behind ({pings} of {expected:.0f} expected pings): "
            "sessions were pinged less than once per interval, so the duplicate "
            "count is a lower bound"
        )
    result.notes.append(
        "note: workers use RedisStore(url), whose own pool is bounded and blocking "
        "(50 connections per worker)"
    )
    result.figures = {
        "workers": workers,
        "sessions": created,
        "create_per_s": created / slowest,
        "create_wall_s": wall,
        "attached_per_worker": [a["attached"] for a in attached],
        "window_s": window,
        "interval_s": INTERVAL,
        "pings": pings,
        "pings_expected_once_each": expected,
        "pings_beyond_single_pinger": beyond,
        "duplicate_pings_per_interval": duplicates,
        "most_pings_one_session": per_session,
        "admission_limit": LIMIT,
        "admitted": admitted,
        "refused": sum(a["refused"] for a in admits),
        "admission_violations": violations,
    }
    f = result.figures
    result.tables.append(
        table(
            ["figure", "value"],
            [
                ["workers x sessions", f"{workers} x {created}"],
                ["create throughput (all workers, /s)", f["create_per_s"]],
                [
                    "sessions attached per worker",
                    ", ".join(map(str, f["attached_per_worker"])),
                ],
                [f"pings in {window:g} s at {INTERVAL:g} s interval", pings],
                ["expected (each session once per interval)", expected],
                ["pings / expected", pings / expected if expected else None],
                [f"pings beyond {bound} per session (one pinger's most)", beyond],
                ["duplicate pings per interval", duplicates],
                [
                    "admitted / refused (limit per credential)",
                    f"{admitted} / {f['refused']} ({LIMIT})",
                ],
            ],
        )
    )
    result.targets += [
        Target("duplicate pings per interval", duplicates, 0.0),
        Target("per-credential admissions violated", float(violations), 0.0),
    ]
    return result


def run(quick: bool = False) -> Result:
    return _main(quick)


if __name__ == "__main__":
    mode, redis_url, url, count, duration = sys.argv[1:6]
    anyio.run(
        _worker, mode, redis_url, url, int(count), float(duration), backend="asyncio"
    )
