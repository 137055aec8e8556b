"""
Work: the Python bytecodes one lifecycle executes, tether against the bare client.

The overhead benchmark times lifecycles; on a small shared machine its ratios
scatter by a tenth or more from run to run. This one counts instead: every
bytecode executed (``sys.settrace`` with opcode events) while each variant
runs the same lifecycle (create, two status reads, kill) against the sandbox
emulator over the same aiohttp transport, grouped by package. A count is
nearly the same on every run (only the event loop's share moves with timing),
so a change to tether's own work shows as a clear difference. It is a measure
of work, not of time: C code (the JSON codec, the sockets) runs uncounted, and
opcodes differ in cost.
"""

from __future__ import annotations

import collections
import sys
from types import FrameType
from typing import Any

import anyio

import tether
from benchmarks._common import Result, Target, quiet_logs, table
from benchmarks._server import KEY, serve_emulator
from benchmarks.overhead import (
    Sequence_,
    _httpx_sequence,
    _tether_sequence,
    client_options,
)
from tether._transport import build_client


_GROUPS = (
    ("tether/_aiohttp", "transport adapter"),
    ("/tether/", "tether"),
    ("tether_sandbox", "sandbox provider"),
    ("/httpx/", "httpx"),
    ("aiohttp", "aiohttp"),
    ("multidict", "aiohttp"),
    ("yarl", "aiohttp"),
    ("/anyio/", "anyio"),
    ("asyncio", "asyncio"),
    ("attrs generated", "attrs"),
)


def _group(filename: str) -> str:
    for key, name in _GROUPS:
        if key in filename:
            return name
    return "other"


async def _count(run: Sequence_, lifecycles: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            counts[_group(frame.f_code.co_filename)] += 1
        return trace

    sys.settrace(trace)
    try:
        for _ in range(lifecycles):
            await run()
    finally:
        sys.settrace(None)
    return counts


async def _main(quick: bool) -> Result:
    quiet_logs()
    result = Result(name="work")
    lifecycles = 10 if quick else 50
    with serve_emulator() as url:
        raw, _ = build_client(client_options(url), transport="aiohttp")
        manager = tether.SessionManager(
            config={"sandbox": {"api_key": KEY, "base_url": url, "timeout": 30}},
            health_checks=False,
            client_factory=lambda _n, o: build_client(o, transport="aiohttp")[0],
        )
        async with raw, manager:
            runs = {
                "raw httpx+aiohttp": _httpx_sequence(raw),
                "tether/aiohttp": _tether_sequence(manager),
            }
            counts = {}
            for name, run in runs.items():
                for _ in range(10):  # warm up: connections, imports, caches
                    await run()
                counts[name] = await _count(run, lifecycles)
    per = {
        name: {k: v / lifecycles for k, v in c.items()} for name, c in counts.items()
    }
    groups = sorted(
        {g for c in per.values() for g in c},
        key=lambda g: -per["tether/aiohttp"].get(g, 0.0),
    )
    raw_total = sum(per["raw httpx+aiohttp"].values())
    tether_total = sum(per["tether/aiohttp"].values())
    rows = [
        [
            g,
            round(per["raw httpx+aiohttp"].get(g, 0.0)),
            round(per["tether/aiohttp"].get(g, 0.0)),
            f"{per['tether/aiohttp'].get(g, 0.0) - per['raw httpx+aiohttp'].get(g, 0.0):+.0f}",
        ]
        for g in groups
    ]
    rows.append(
        [
            "total",
            round(raw_total),
            round(tether_total),
            f"{tether_total - raw_total:+.0f}",
        ]
    )
    result.tables.append(
        "Python bytecodes per lifecycle (create, 2 status reads, kill), by package;\n"
        "nearly the same on every run (C code is not counted; the event loop's share\n"
        "varies a little with timing)\n"
        + table(["package", "raw httpx+aiohttp", "tether/aiohttp", "difference"], rows)
    )
    ratio = tether_total / raw_total
    result.figures = {
        "lifecycles": lifecycles,
        "opcodes_per_lifecycle": {
            name: dict(sorted(c.items())) for name, c in per.items()
        },
        "ratio": ratio,
    }
    result.targets.append(
        Target("tether / bare client, bytecodes per lifecycle", ratio, 1.10)
    )
    return result


def run(quick: bool = False) -> Result:
    return anyio.run(_main, quick, backend="asyncio")
