"""
Overhead: tether's create -> ping -> (update | ping) -> close against a bare client.

The sandbox emulator runs under uvicorn in a subprocess on loopback, so the
server's CPU is not in this process. Each variant makes the same HTTP calls
(``POST /v1/sessions/session``, ``GET /v1/sessions/status/{id}`` twice, since
the sandbox cannot update, then ``POST /kill``), reads the same JSON, at
concurrency 1 and 100; the variants run interleaved, round by round, in one
run, so the ratios compare like with like.
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import httpx

import tether
from benchmarks._common import Result, Target, median, quiet_logs, table
from benchmarks._server import KEY, serve_emulator
from tether._transport import build_client
from tether.abc import ClientOptions


Sequence_ = Callable[[], Awaitable[None]]

RAW = ("raw httpx", "raw httpx+aiohttp", "raw aiohttp")
TETHER = ("tether/httpx", "tether/aiohttp", "tether default")
# The bare client on the same transport as each tether variant.
BASELINE = {
    "tether/httpx": "raw httpx",
    "tether/aiohttp": "raw httpx+aiohttp",
    "tether default": "raw httpx+aiohttp",
}


def _create_body() -> dict[str, Any]:
    return {
        "api_key": KEY,
        "vm_lifetime_seconds": 300,
        "metadata": {"tether_id": uuid.uuid4().hex},
    }


def client_options(url: str) -> ClientOptions:
    """
    What the sandbox provider gives its client: the bare clients get the same.
    """
    return ClientOptions(
        base_url=url,
        headers={"X-API-Key": KEY, "Accept": "application/json"},
        timeout=30,
    )


def _httpx_sequence(client: httpx.AsyncClient) -> Sequence_:
    async def run() -> None:
        r = await client.post("/v1/sessions/session", json=_create_body())
        r.raise_for_status()
        sid = r.json()["session_id"]
        for _ in range(2):
            r = await client.get(f"/v1/sessions/status/{sid}")
            r.raise_for_status()
            r.json()
        r = await client.post("/kill", json={"session_id": sid})
        if r.status_code not in (200, 404):
            r.raise_for_status()

    return run


def _aiohttp_sequence(session: aiohttp.ClientSession, url: str) -> Sequence_:
    headers = {"X-API-Key": KEY, "Accept": "application/json"}

    async def run() -> None:
        async with session.post(
            f"{url}/v1/sessions/session", json=_create_body(), headers=headers
        ) as r:
            r.raise_for_status()
            sid = (await r.json())["session_id"]
        for _ in range(2):
            async with session.get(
                f"{url}/v1/sessions/status/{sid}", headers=headers
            ) as r:
                r.raise_for_status()
                await r.json()
        async with session.post(
            f"{url}/kill", json={"session_id": sid}, headers=headers
        ) as r:
            if r.status not in (200, 404):
                r.raise_for_status()

    return run


def _tether_sequence(manager: tether.SessionManager) -> Sequence_:
    async def run() -> None:
        s = await manager.create("sandbox")
        await manager.ping(s)
        if manager.provider("sandbox").capabilities.update:
            s = await manager.update(s, env={"A": "1"})
        else:
            await manager.ping(s)
        await manager.close(s)

    return run


async def _batch(
    run: Sequence_, concurrency: int, count: int
) -> tuple[list[float], float, float]:
    """
    *count* sequences, *concurrency* at a time: (latencies, wall, cpu).
    """
    latencies: list[float] = []
    per_worker = max(1, count // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            t0 = time.perf_counter()
            await run()
            latencies.append(time.perf_counter() - t0)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return latencies, time.perf_counter() - wall0, time.process_time() - cpu0


def _group(path: str) -> str:
    for key, name in (
        ("tether_sandbox", "tether_sandbox (provider)"),
        ("/tether/", "tether"),
        ("httpx_aiohttp", "httpx_aiohttp"),
        ("/httpx/", "httpx"),
        ("httpcore", "httpcore"),
        ("aiohttp", "aiohttp"),
        ("/anyio/", "anyio"),
        ("asyncio", "asyncio"),
        ("attr", "attrs"),
        ("structlog", "structlog"),
        ("tenacity", "tenacity"),
        ("/json/", "json"),
        ("h11", "h11"),
        ("uuid", "uuid"),
    ):
        if key in path:
            return name
    return "other"


def _profile_summary(
    session: Any, top: int
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """
    Self time by function and by package, as fractions of the profile.
    """
    by_func: collections.Counter[str] = collections.Counter()
    by_pkg: collections.Counter[str] = collections.Counter()
    root = session.root_frame()
    if root is None:
        return [], []
    total = root.time or 1.0
    stack = [root]
    while stack:
        frame = stack.pop()
        real = [c for c in frame.children if not c.is_synthetic]
        self_time = frame.time - sum(c.time for c in real)
        stack.extend(real)
        if self_time <= 0 or frame.is_synthetic:
            continue
        path = frame.file_path or ""
        short = path.split("site-packages/")[-1].split("/src/")[-1]
        by_func[f"{frame.function} ({short}:{frame.line_no})"] += self_time
        by_pkg[_group(path)] += self_time
    funcs = [(k, v / total) for k, v in by_func.most_common(top)]
    pkgs = [(k, v / total) for k, v in by_pkg.most_common()]
    return funcs, pkgs


async def _main(quick: bool) -> Result:
    quiet_logs()
    result = Result(name="overhead")
    # Concurrency 1 is cheap and the noisiest (each sequence waits on the
    # server): more, shorter rounds there.
    rounds = {1: 3 if quick else 9, 100: 3 if quick else 5}
    counts = {1: 20 if quick else 60, 100: 200 if quick else 500}
    with serve_emulator() as url:
        options = client_options(url)
        raw_httpx, _ = build_client(options, transport="httpx")
        raw_aio, _ = build_client(options, transport="aiohttp")
        native = aiohttp.ClientSession()
        config = {"sandbox": {"api_key": KEY, "base_url": url, "timeout": 30}}

        def manager(transport: str | None) -> tether.SessionManager:
            kwargs: dict[str, Any] = {}
            if transport is not None:
                kwargs["client_factory"] = lambda _n, o: build_client(
                    o, transport=transport
                )[0]
            return tether.SessionManager(config=config, health_checks=False, **kwargs)

        managers = {
            "tether/httpx": manager("httpx"),
            "tether/aiohttp": manager("aiohttp"),
            "tether default": manager(None),
        }
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(raw_httpx)
            await stack.enter_async_context(raw_aio)
            await stack.enter_async_context(native)
            for m in managers.values():
                await stack.enter_async_context(m)
            if True:
                runs: dict[str, Sequence_] = {
                    "raw httpx": _httpx_sequence(raw_httpx),
                    "raw httpx+aiohttp": _httpx_sequence(raw_aio),
                    "raw aiohttp": _aiohttp_sequence(native, url),
                    **{k: _tether_sequence(m) for k, m in managers.items()},
                }
                names = list(runs)
                # Warm up: connections opened, providers loaded.
                for run in runs.values():
                    await _batch(run, 10, 20)
                default_transport = (
                    managers["tether default"].snapshot().providers["sandbox"].transport
                )
                stats: dict[tuple[str, int], dict[str, list[float]]] = {}
                for concurrency, count in counts.items():
                    for r in range(rounds[concurrency]):
                        # Rotate the order each round: no variant always goes first.
                        order = names[r % len(names) :] + names[: r % len(names)]
                        for name in order:
                            lat, wall, cpu = await _batch(
                                runs[name], concurrency, count
                            )
                            entry = stats.setdefault(
                                (name, concurrency),
                                {
                                    "lat": [],
                                    "wall": [],
                                    "cpu": [],
                                    "n": [],
                                    "rounds": [],
                                },
                            )
                            entry["lat"].extend(lat)
                            entry["rounds"].append(median(lat))
                            entry["wall"].append(wall)
                            entry["cpu"].append(cpu)
                            entry["n"].append(len(lat))
                # Profile tether (default transport) at concurrency 100, and its
                # bare baseline, outside the timed rounds.
                from pyinstrument import Profiler  # noqa: PLC0415

                profiles = {}
                for name in ("tether default", "raw httpx+aiohttp"):
                    profiler = Profiler(interval=0.0005, async_mode="disabled")
                    profiler.start()
                    await _batch(runs[name], 100, counts[100])
                    profiler.stop()
                    profiles[name] = _profile_summary(profiler.last_session, 25)

    rows = []
    figures: dict[str, Any] = {"default_transport": default_transport}
    for concurrency in counts:
        for name in names:
            e = stats[(name, concurrency)]
            n = sum(e["n"])
            med = median(e["lat"])
            thr = n / sum(e["wall"])
            cpu = sum(e["cpu"]) / n
            base = BASELINE.get(name)
            ratio = med / median(stats[(base, concurrency)]["lat"]) if base else None
            # Round by round (each round runs every variant back to back), the
            # ratio of medians: slow drifts of the machine's speed cancel out.
            paired = (
                sorted(
                    mine / theirs
                    for mine, theirs in zip(
                        e["rounds"], stats[(base, concurrency)]["rounds"], strict=True
                    )
                )
                if base
                else []
            )
            cpu_ratio = (
                cpu
                / (
                    sum(stats[(base, concurrency)]["cpu"])
                    / sum(stats[(base, concurrency)]["n"])
                )
                if base
                else None
            )
            # Ratio of per-round medians: a spread for the headline ratio.
            rows.append(
                [
                    name,
                    concurrency,
                    n,
                    med * 1000,
                    thr,
                    cpu * 1000,
                    base or "",
                    ratio,
                    f"{median(paired):.3f} ({paired[0]:.2f}-{paired[-1]:.2f})"
                    if paired
                    else None,
                    cpu_ratio,
                ]
            )
            figures[f"{name} c={concurrency}"] = {
                "sequences": n,
                "median_ms": med * 1000,
                "p90_ms": statistics.quantiles(e["lat"], n=10)[-1] * 1000
                if len(e["lat"]) > 1
                else None,
                "throughput_seq_per_s": thr,
                "cpu_ms_per_seq": cpu * 1000,
                "baseline": base,
                "median_ratio": ratio,
                "round_ratios": paired,
                "cpu_ratio": cpu_ratio,
            }
    result.tables.append(
        "one sequence = 4 HTTP requests; latency per sequence, throughput in sequences/s,\n"
        "client-process CPU per sequence; ratio = tether / bare client on the same transport\n"
        "(median ratio: of all sequences' medians; per round: the median of each round's\n"
        "ratio, rounds run the variants back to back, with their spread)\n"
        f"(tether default picked transport: {default_transport})"
    )
    result.tables.append(
        table(
            [
                "variant",
                "conc",
                "n",
                "median ms",
                "seq/s",
                "cpu ms/seq",
                "baseline",
                "median ratio",
                "per round (min-max)",
                "cpu ratio",
            ],
            rows,
        )
    )
    for name in ("tether/httpx", "tether/aiohttp", "tether default"):
        for concurrency in counts:
            result.targets.append(
                Target(
                    f"{name} / {BASELINE[name]} median latency ratio, c={concurrency}",
                    figures[f"{name} c={concurrency}"]["median_ratio"],
                    1.10,
                )
            )
    speedup = (
        figures["tether default c=100"]["throughput_seq_per_s"]
        / figures["raw httpx c=100"]["throughput_seq_per_s"]
    )
    speedup_t = (
        figures["tether default c=100"]["throughput_seq_per_s"]
        / figures["tether/httpx c=100"]["throughput_seq_per_s"]
    )
    figures["default_vs_raw_httpx_throughput_c100"] = speedup
    figures["default_vs_tether_httpx_throughput_c100"] = speedup_t
    result.targets.append(
        Target(
            "tether default throughput / raw httpx (default transport), c=100",
            speedup,
            3.0,
            ">=",
            "x",
        )
    )
    result.targets.append(
        Target(
            "tether default throughput / tether over httpx, c=100",
            speedup_t,
            3.0,
            ">=",
            "x",
        )
    )
    for name, (funcs, pkgs) in profiles.items():
        figures[f"profile {name}"] = {"functions": funcs, "packages": pkgs}
        result.tables.append(
            f"profile ({name}, c=100, pyinstrument, self time as % of the run):\n"
            + table(["package", "%"], [[k, v * 100] for k, v in pkgs])
        )
        if name == "tether default":
            result.tables.append(
                "top functions by self time (tether default, c=100):\n"
                + table(["function", "%"], [[k, v * 100] for k, v in funcs])
            )
    result.figures = figures
    return result


def run(quick: bool = False) -> Result:
    return anyio.run(_main, quick, backend="asyncio")
