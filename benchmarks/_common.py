"""
What every benchmark shares: results, tables, targets, and process figures.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs
import structlog


@attrs.define
class Target:
    """
    One target: a figure, how it compares, and whether it was met.
    """

    name: str
    value: float | None
    limit: float
    op: str = "<="  # "<=" or ">="
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        if self.op == "<=":
            return self.value <= self.limit
        return self.value >= self.limit

    def line(self) -> str:
        if self.value is None:
            return f"  SKIPPED  {self.name}: no figure (target {self.op} {self.limit:g}{self.unit})"
        word = "met   " if self.met else "MISSED"
        return (
            f"  {word}   {self.name}: {self.value:.4g}{self.unit} "
            f"(target {self.op} {self.limit:g}{self.unit})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "op": self.op,
            "unit": self.unit,
            "met": self.met,
        }


@attrs.define
class Result:
    """
    What one benchmark returns: figures for JSON, tables and notes for people.
    """

    name: str
    figures: dict[str, Any] = attrs.field(factory=dict)
    targets: list[Target] = attrs.field(factory=list)
    tables: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    skipped: str | None = None

    def human(self) -> str:
        out = [f"== {self.name} " + "=" * max(0, 70 - len(self.name))]
        if self.skipped:
            out.append(f"SKIPPED: {self.skipped}")
        out.extend(self.tables)
        if self.targets:
            out.append("targets:")
            out.extend(t.line() for t in self.targets)
        out.extend(self.notes)
        return "\n".join(out) + "\n"

    def to_json(self) -> str:
        return json.dumps(
            {
                "benchmark": self.name,
                "skipped": self.skipped,
                "figures": self.figures,
                "targets": [t.to_json() for t in self.targets],
                "notes": self.notes,
                "meta": meta(),
            },
            sort_keys=True,
            default=str,
        )


def meta() -> dict[str, Any]:
    import platform  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "commit": commit or None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """
    A plain text table, right-aligned numbers.
    """

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
        return "-" if v is None else str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    )
    return "\n".join(lines)


def quiet_logs(level: int = logging.WARNING) -> None:
    """
    Drop tether's log events below WARNING, as a production app would.

    structlog's default prints every event (debug included) to stdout; that
    would measure the terminal, not tether.
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_bytes() -> int:
    """
    The resident set size now (Linux ``/proc``; else the peak from getrusage).
    """
    try:
        with open("/proc/self/statm", encoding="ascii") as f:  # noqa: PTH123
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
