"""
Distributed: N watch workers (processes) sharing one Redis store of M sessions.

One redis-server and the sandbox emulator (uvicorn subprocess, counting status
requests per session) serve every phase:

1. create: each worker creates M/N sessions (concurrently); create throughput.
2. watch: N watch workers share the sessions out by shard, pinging each at
   the interval. Once every session has been pinged and the shards are
   balanced, a window of a few intervals measures pings delivered against
   expected, duplicates (pings beyond what one pinger can make), Redis
   commands per ping (``INFO commandstats``, scripts' inner commands
   included), CPU per ping (the workers' user + system time), and the shard
   and session shares.
3. takeover: the worker holding the most shards is killed (SIGKILL); the time
   from the kill to each of its sessions' next ping at the emulator.
4. solo: one process, MemoryStore, M/N sessions at the same interval: the
   single-process CPU per ping, for comparison.
5. admit: a provider allowing L live sessions per credential; every worker
   tries to create more at once; admissions beyond L are violations.
6. trio: the cost of RedisStore under trio (redis-py's sync client in worker
   threads) against asyncio, in this process: get() round trips per second.

``TETHER_BENCH_DISTRIBUTED="workers,sessions,interval"`` overrides the
configuration (default 4,10000,10; ``--quick``: 2,400,1).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from typing import Any, ClassVar

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
    wait_port,
)
from benchmarks._server import KEY, serve_emulator


LIMIT = 5


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
    mode: str, redis_url: str, url: str, count: int, interval: float
) -> None:
    from tether.stores import RedisStore  # noqa: PLC0415

    quiet_logs()
    store: Any = RedisStore(redis_url) if mode != "solo" else tether.MemoryStore()
    config = {
        name: {"api_key": KEY, "base_url": url, "timeout": 30}
        for name in ("sandbox", "limited")
    }
    out: dict[str, Any] = {"mode": mode}
    async with tether.SessionManager(
        registry=_registry(),
        store=store,
        config=config,
        health=tether.HealthPolicy(
            interval=interval,
            enabled=mode in {"watch", "solo"},
            max_concurrent=256,
        ),
        admission=tether.AdmissionPolicy(mode="reject"),
        on_exit="close" if mode == "solo" else "keep",
        watch=mode == "watch",
    ) as manager:
        if mode in {"create", "solo"}:
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(20):

                    async def make(n: int = count // 20) -> None:
                        for _ in range(n):
                            await manager.create("sandbox")

                    tg.start_soon(make)
            out["created"] = count // 20 * 20
            out["seconds"] = time.perf_counter() - t0
        if mode in {"watch", "solo"}:
            print(json.dumps({"ready": True}), flush=True)
            # Until the benchmark closes our stdin (or kills us).
            await anyio.to_thread.run_sync(sys.stdin.read)
        elif mode == "admit":
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
    mode: str, redis_url: str, url: str, count: int, interval: float
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
            str(interval),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stats(url: str, what: str = "stats") -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_bench/{what}", timeout=30) as r:  # noqa: S310
        return json.loads(r.read())


def _cpu(pid: int) -> float:
    # User + system seconds of a live process (Linux /proc).
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:  # noqa: PTH123
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _emulator_pid(url: str) -> int | None:
    # The uvicorn process serving *url* (Linux /proc), to measure its CPU.
    port = url.rsplit(":", 1)[1]
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"benchmarks._server" in argv and port.encode() in argv:
            return int(entry.name)
    return None


def _calls(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(
        v["calls"]
        for k, v in stats.items()
        if not k.startswith(("cmdstat_info", "cmdstat_config"))
    )


def _owners(client: Any, ns: str, shards: int) -> tuple[dict[str, int], dict[str, int]]:
    # Shards and sessions per live member.
    now_s, now_us = client.time()
    now = now_s * 1000 + now_us // 1000
    live = {
        m.decode()
        for m, until in client.zrange(f"{ns}:members", 0, -1, withscores=True)
        if until > now
    }
    held = {
        int(k): v.decode().rpartition("|")[0]
        for k, v in client.hgetall(f"{ns}:shards").items()
    }
    pipe = client.pipeline(transaction=False)
    for k in range(shards):
        pipe.scard(f"{ns}:shard:{k}")
    sizes = pipe.execute()
    by_shards = dict.fromkeys(live, 0)
    by_sessions = dict.fromkeys(live, 0)
    for k in range(shards):
        owner = held.get(k, "")
        if owner in by_shards:
            by_shards[owner] += 1
            by_sessions[owner] += sizes[k]
    return by_shards, by_sessions


def _wait(predicate: Any, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def _config(quick: bool) -> tuple[int, int, float]:
    raw = os.environ.get("TETHER_BENCH_DISTRIBUTED")
    if raw:
        w, m, i = raw.split(",")
        return int(w), int(m), float(i)
    return (2, 400, 1.0) if quick else (4, 10_000, 10.0)


async def _trio_cost(redis_url: str, rounds: int) -> dict[str, float]:
    """
    get() round trips per second, one at a time and 50 at once.
    """
    from tether.stores import RedisStore  # noqa: PLC0415

    out: dict[str, float] = {}
    async with RedisStore(redis_url, namespace="bench_trio") as store:
        await store.get("nothing")  # connect, load scripts
        t0 = time.perf_counter()
        for _ in range(rounds):
            await store.get("nothing")
        out["sequential_per_s"] = rounds / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(50):

                async def many() -> None:
                    for _ in range(rounds // 50):
                        await store.get("nothing")

                tg.start_soon(many)
        out["concurrent_per_s"] = rounds // 50 * 50 / (time.perf_counter() - t0)
    return out


def _main(quick: bool) -> Result:
    result = Result(name="distributed")
    try:
        import redis  # noqa: PLC0415

        from tether.stores import RedisStore  # noqa: F401, PLC0415
    except ImportError as exc:
        result.skipped = f"no RedisStore yet ({exc})"
        return result
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        result.skipped = "redis-server is not installed"
        return result
    workers, sessions, interval = _config(quick)
    per_worker = sessions // workers
    window = 3 * interval
    ns, shards = "tether", 128
    port = free_port()
    f: dict[str, Any] = {
        "workers": workers,
        "interval_s": interval,
        "window_s": window,
        "shards": shards,
    }
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
            client = redis.Redis(port=port)
            empty = client.info("memory")["used_memory"]
            with serve_emulator() as url:
                # 1. create
                t0 = time.perf_counter()
                procs = [
                    _spawn("create", redis_url, url, per_worker, interval)
                    for _ in range(workers)
                ]
                outs = [
                    json.loads(p.communicate(timeout=1800)[0].strip().splitlines()[-1])
                    for p in procs
                ]
                f["create_wall_s"] = time.perf_counter() - t0
                created = f["sessions"] = sum(o["created"] for o in outs)
                f["create_per_s"] = created / max(o["seconds"] for o in outs)
                ids = [i.decode() for i in client.zrange(f"{ns}:ids", 0, -1)]
                pipe = client.pipeline(transaction=False)
                for sid in ids:
                    pipe.hget(f"{ns}:s:{sid}", "json")
                records = [json.loads(r) for r in pipe.execute()]
                remote = {r["id"]: r["remote_id"] for r in records}
                f["redis_used_memory_bytes"] = client.info("memory")["used_memory"]
                f["redis_bytes_per_session"] = (
                    f["redis_used_memory_bytes"] - empty
                ) / max(1, created)
                sample = ids[: min(200, len(ids))]
                per_key = 0
                for sid in sample:
                    per_key += client.memory_usage(f"{ns}:s:{sid}") or 0
                f["redis_record_hash_bytes"] = per_key / max(1, len(sample))
                # 2. watch
                procs = [
                    _spawn("watch", redis_url, url, 0, interval) for _ in range(workers)
                ]
                for p in procs:
                    p.stdout.readline()  # type: ignore[union-attr]
                t0 = time.monotonic()

                def balanced() -> bool:
                    counts = list(_owners(client, ns, shards)[0].values())
                    return (
                        len(counts) == workers
                        and sum(counts) == shards
                        and max(counts) <= 1.5 * min(counts)
                    )

                f["balance_wait_s"] = (
                    time.monotonic() - t0 if _wait(balanced, 120) else None
                )
                _stats(url, "reset")
                _wait(
                    lambda: len(_stats(url)["pings"]) >= created,
                    6 * interval + 60,
                )
                f["all_pinged_after_s"] = time.monotonic() - t0
                by_shards, by_sessions = _owners(client, ns, shards)
                f["shards_per_worker"] = sorted(by_shards.values())
                f["sessions_per_worker"] = sorted(by_sessions.values())
                f["shard_balance"] = max(by_shards.values()) / max(
                    1, min(by_shards.values())
                )
                # The window: counts from zero.
                _stats(url, "reset")
                client.config_resetstat()
                emulator = _emulator_pid(url)
                cpu0 = sum(_cpu(p.pid) for p in procs)
                emulator0 = _cpu(emulator) if emulator else 0.0
                time.sleep(window)
                stats = _stats(url)
                spent = _calls(client)
                cpu = sum(_cpu(p.pid) for p in procs) - cpu0
                if emulator:
                    f["emulator_cpu_share"] = (_cpu(emulator) - emulator0) / window
                f["load_average_1min"] = os.getloadavg()[0]
                f["workers_cpu_share"] = cpu / window
                pings = f["pings"] = sum(stats["pings"].values())
                expected = f["pings_expected"] = created * window / interval
                f["delivered_ratio"] = pings / expected if expected else None
                bound = int(window / (interval * 0.9)) + 1
                beyond = sum(max(0, n - bound) for n in stats["pings"].values())
                f["pings_beyond_single_pinger"] = beyond
                f["duplicate_pings_per_interval"] = beyond / (window / interval)
                f["redis_commands"] = spent
                f["redis_commands_per_ping"] = spent / pings if pings else None
                f["cpu_s_per_ping_distributed"] = cpu / pings if pings else None
                f["redis_used_memory_bytes_watching"] = client.info("memory")[
                    "used_memory"
                ]
                # 3. takeover: kill -9 the worker with the most shards.
                held = {
                    int(k): v.decode().rpartition("|")[0]
                    for k, v in client.hgetall(f"{ns}:shards").items()
                }
                victim_owner = max(by_shards, key=lambda o: by_shards[o])
                victim_pid = int(victim_owner.split(":")[1])
                victim = next(p for p in procs if p.pid == victim_pid)
                orphans = [
                    remote[sid]
                    for sid in ids
                    if held.get(zlib.crc32(sid.encode()) % shards) == victim_owner
                ]
                _stats(url, "mark")
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                ttl = max(3 * interval, 10.0)
                _wait(
                    lambda: set(orphans) <= set(_stats(url)["after"]),
                    ttl + 4 * interval + 60,
                    step=0.5,
                )
                after = _stats(url)["after"]
                took = [after[r] for r in orphans if r in after]
                f["takeover_sessions"] = len(orphans)
                f["takeover_taken"] = len(took)
                f["lease_ttl_s"] = ttl
                f["takeover_p50_s"] = median(took)
                f["takeover_p99_s"] = percentile(took, 99)
                f["takeover_max_s"] = max(took) if took else None
                # Duplicates across the takeover: one window after it.
                _stats(url, "reset")
                time.sleep(window)
                stats = _stats(url)
                beyond = sum(max(0, n - bound) for n in stats["pings"].values())
                f["pings_beyond_single_pinger_after_takeover"] = beyond
                f["delivered_ratio_after_takeover"] = sum(stats["pings"].values()) / (
                    created * window / interval
                )
                for p in procs:
                    if p is not victim:
                        p.communicate(input="", timeout=120)
                # 4. solo: one process, memory store, one worker's share.
                solo = _spawn("solo", redis_url, url, per_worker, interval)
                solo.stdout.readline()  # type: ignore[union-attr]
                time.sleep(1.5 * interval)
                _stats(url, "reset")
                cpu0 = _cpu(solo.pid)
                time.sleep(window)
                stats = _stats(url)
                cpu = _cpu(solo.pid) - cpu0
                solo_pings = sum(stats["pings"].values())
                f["solo_pings"] = solo_pings
                f["solo_delivered_ratio"] = solo_pings / (
                    per_worker * window / interval
                )
                f["cpu_s_per_ping_solo"] = cpu / solo_pings if solo_pings else None
                solo.communicate(input="", timeout=300)
                # 5. admit
                procs = [
                    _spawn("admit", redis_url, url, 20, interval)
                    for _ in range(workers)
                ]
                admits = [
                    json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1])
                    for p in procs
                ]
                admitted = f["admitted"] = sum(a["admitted"] for a in admits)
                f["refused"] = sum(a["refused"] for a in admits)
                # 6. trio
                rounds = 500 if quick else 3000
                for backend in ("asyncio", "trio"):
                    for k, v in anyio.run(
                        _trio_cost, redis_url, rounds, backend=backend
                    ).items():
                        f[f"get_{k}_{backend}"] = v
            client.close()
        finally:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    violations = f["admission_violations"] = max(0, admitted - LIMIT)
    f["admission_limit"] = LIMIT
    result.figures = f
    result.notes.append(
        "note: commands per ping count every command Redis ran in the window, "
        "the ones inside Lua scripts included (INFO commandstats); CPU is the "
        "worker processes' user + system time"
    )
    result.tables.append(
        table(
            ["figure", "value"],
            [
                ["workers x sessions", f"{workers} x {created}"],
                ["interval / window (s)", f"{interval:g} / {window:g}"],
                ["create throughput (all workers, /s)", f["create_per_s"]],
                ["shards per worker", ", ".join(map(str, f["shards_per_worker"]))],
                ["sessions per worker", ", ".join(map(str, f["sessions_per_worker"]))],
                ["shard balance (largest / smallest)", f["shard_balance"]],
                ["pings delivered / expected", f"{pings} / {expected:.0f}"],
                ["delivered ratio", f["delivered_ratio"]],
                ["duplicate pings per interval", f["duplicate_pings_per_interval"]],
                ["Redis commands per ping", f["redis_commands_per_ping"]],
                [
                    "CPU ms per ping, distributed",
                    1000 * (f["cpu_s_per_ping_distributed"] or 0),
                ],
                [
                    "CPU ms per ping, one process (memory)",
                    1000 * (f["cpu_s_per_ping_solo"] or 0),
                ],
                [
                    "CPU in the window: workers / emulator (cores)",
                    (
                        f"{f['workers_cpu_share']:.2f} / "
                        f"{f.get('emulator_cpu_share', 0):.2f}"
                    ),
                ],
                ["machine load average (1 min)", f["load_average_1min"]],
                [
                    f"takeover p50 / p99 (s, TTL {ttl:g})",
                    f"{f['takeover_p50_s']:.2f} / {f['takeover_p99_s']:.2f}",
                ],
                ["sessions taken over", f"{len(took)} / {len(orphans)}"],
                [
                    "pings beyond one pinger after takeover",
                    f["pings_beyond_single_pinger_after_takeover"],
                ],
                [
                    "get()/s asyncio seq / 50 at once",
                    f"{f['get_sequential_per_s_asyncio']:.0f} / {f['get_concurrent_per_s_asyncio']:.0f}",
                ],
                [
                    "get()/s trio (threads) seq / 50 at once",
                    f"{f['get_sequential_per_s_trio']:.0f} / {f['get_concurrent_per_s_trio']:.0f}",
                ],
                [
                    "Redis memory per session (used_memory growth, B)",
                    f["redis_bytes_per_session"],
                ],
                [
                    "  of which the record hash (MEMORY USAGE, B)",
                    f["redis_record_hash_bytes"],
                ],
                [
                    "admitted / refused (limit per credential)",
                    f"{admitted} / {f['refused']} ({LIMIT})",
                ],
            ],
        )
    )
    result.targets += [
        Target("pings delivered / expected", f["delivered_ratio"], 0.98, ">="),
        Target("Redis commands per ping", f["redis_commands_per_ping"], 0.5),
        Target("shard balance", f["shard_balance"], 1.5),
        Target("duplicate pings per interval", f["duplicate_pings_per_interval"], 0.0),
        Target(
            "takeover p99 - (TTL + interval)",
            f["takeover_p99_s"] - (ttl + interval),
            0.0,
            unit=" s",
        ),
        Target("per-credential admissions violated", float(violations), 0.0),
    ]
    return result


def run(quick: bool = False) -> Result:
    return _main(quick)


if __name__ == "__main__":
    mode, redis_url, url, count, interval = sys.argv[1:6]
    anyio.run(
        _worker, mode, redis_url, url, int(count), float(interval), backend="asyncio"
    )
