"""
Local: what a kernel session on this machine costs, isolated and not.

Each round creates a ``local`` session through the manager, runs a first
execution, then later ones (state carries: ``x += 1``), measures the memory of
the session's process tree (the resident set of every process carrying its
marker: watchdog, bubblewrap, kernel), and closes it. The bubblewrap sandbox is
measured beside the same kernel without isolation, in the same run, so the
sandbox's price shows as a ratio.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import tether
from benchmarks._common import Result, Target, median, percentile, quiet_logs, table


_PAGE = 4096


def _tree_rss(remote_id: str) -> int:
    """
    Bytes resident in the session's processes, from ``/proc``.
    """
    marker = f"TETHER_LOCAL_SESSION={remote_id}".encode()
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            total += int((entry / "statm").read_text().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


async def _variant(
    isolation: str, rounds: int, later: int, where: str
) -> dict[str, list[float]]:
    config = {"local": {"state_dir": f"{where}/state", "runtime_dir": f"{where}/run"}}
    figures: dict[str, list[float]] = {
        "create": [],
        "first": [],
        "later": [],
        "close": [],
        "rss": [],
    }
    async with tether.SessionManager(
        config=config, environ={}, health_checks=False
    ) as manager:
        for _ in range(rounds):
            t0 = time.perf_counter()
            session = await manager.create("local", isolation=isolation, memory_mb=512)
            figures["create"].append(time.perf_counter() - t0)
            handle = manager.handle(session)
            t0 = time.perf_counter()
            await handle.execute("x = 0")
            figures["first"].append(time.perf_counter() - t0)
            for _ in range(later):
                t0 = time.perf_counter()
                await handle.execute("x += 1")
                figures["later"].append(time.perf_counter() - t0)
            out = await handle.execute("print(x)")
            assert f"{later}\n" == out.stdout, out
            assert session.remote_id is not None
            figures["rss"].append(_tree_rss(session.remote_id) / 2**20)
            t0 = time.perf_counter()
            await manager.close(session)
            figures["close"].append(time.perf_counter() - t0)
    return figures


async def _main(quick: bool) -> Result:
    quiet_logs()
    rounds, later = (2, 5) if quick else (6, 30)
    variants = ["bwrap", "none"] if shutil.which("bwrap") else ["none"]
    where = tempfile.mkdtemp(prefix="tlb")
    try:
        measured = {v: await _variant(v, rounds, later, where) for v in variants}
    finally:
        shutil.rmtree(where, ignore_errors=True)
    rows = []
    figures: dict[str, Any] = {}
    for variant, data in measured.items():
        row: list[Any] = [variant]
        for key in ("create", "first", "later", "close"):
            p50, p99 = median(data[key]) * 1000, percentile(data[key], 99) * 1000
            row += [p50, p99]
            figures[f"{variant}_{key}_p50_ms"] = p50
            figures[f"{variant}_{key}_p99_ms"] = p99
        rss = median(data["rss"])
        row.append(rss)
        figures[f"{variant}_rss_mib"] = rss
        rows.append(row)
    result = Result(
        name="local",
        figures=figures,
        tables=[
            table(
                [
                    "isolation",
                    "create p50 ms",
                    "p99",
                    "first exec p50",
                    "p99",
                    "later exec p50",
                    "p99",
                    "close p50",
                    "p99",
                    "RSS/session MiB",
                ],
                rows,
            )
        ],
        notes=[
            (
                f"{rounds} sessions per variant, {later} later executions each; "
                "RSS: every process of the session (watchdog, bubblewrap, kernel)."
            )
        ],
    )
    if "bwrap" in measured:
        ratio = median(measured["bwrap"]["create"]) / median(measured["none"]["create"])
        figures["create_ratio_bwrap_over_none"] = ratio
        result.targets.append(
            Target("create with bubblewrap / without (p50)", ratio, 1.5, unit="x")
        )
        later_ratio = median(measured["bwrap"]["later"]) / median(
            measured["none"]["later"]
        )
        figures["later_ratio_bwrap_over_none"] = later_ratio
        result.targets.append(
            Target(
                "later execute with bubblewrap / without", later_ratio, 1.5, unit="x"
            )
        )
    else:
        result.notes.append("bubblewrap is not installed: isolation='none' only")
    return result


def run(quick: bool = False) -> Result:
    return anyio.run(_main, quick, backend="asyncio")
