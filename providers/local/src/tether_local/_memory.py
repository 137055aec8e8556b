"""
The memory cap of one session: what all its processes hold together.

``RLIMIT_DATA`` bounds each process; a session of many processes could hold
that many times over. The session's watchdog samples, every
:data:`SAMPLE_INTERVAL` seconds, the memory of each process of the session
(its proportional set size, so pages shared after a fork count once) and, past
the cap, kills the largest process, like an out-of-memory killer: a child of
the kernel, and the session keeps running; or the kernel itself, when it is
the largest, and the session ends.

Kills are noted in the session's ``memory.json`` (the watchdog writes, the
provider reads), so an execution and a ping can say why a process went away.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from tether_local._records import read_note, session_pids


__all__ = ["SAMPLE_INTERVAL", "MemoryCap", "describe", "read_kills", "usage"]

#: Seconds between two samples: how long the session may be over its cap.
SAMPLE_INTERVAL: Final = 0.25
_MIB: Final = 1024 * 1024
#: Kills kept in ``memory.json`` (the count covers them all).
_KEEP: Final = 20
#: Without bubblewrap's PID namespace, every this many samples the whole
#: process table is searched for the session's processes that left the
#: watchdog's tree (orphans adopted by init); otherwise the tree is walked.
_SCAN_EVERY: Final = 8


def usage(pid: int) -> int | None:
    """
    The bytes process *pid* holds: its proportional set size, or its resident
    size where that cannot be read; ``None`` once it is gone.
    """
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        rollup = ""
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # a kernel thread or a process exiting: no memory of its own


def _stat(pid: int) -> tuple[str, int, int] | None:
    """
    ``(command name, parent, start time)`` of *pid*, or ``None`` once it is
    gone or a zombie.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return name, int(fields[1]), int(fields[19])


def _children(pid: int) -> list[int]:
    """
    The children of *pid*, from each of its threads.
    """
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):  # noqa: PTH208
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
                found += [int(child) for child in text.split()]
    return found


def _tree(roots: Iterable[int]) -> set[int]:
    """
    *roots* and all their descendants.
    """
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += _children(pid)
    return seen


def _mib(value: float) -> str:
    # Rounded up: a session just past its cap does not read as within it.
    return f"{math.ceil(value / _MIB)} MiB"


def describe(kill: Mapping[str, Any]) -> str:
    """
    One kill, in words.
    """
    return (
        f"memory limit of {_mib(kill['limit'])} exceeded (the session held "
        f"{_mib(kill['total'])}): the watchdog killed process {kill['pid']} "
        f"({kill['name']}, {_mib(kill['held'])})"
    )


_FIELDS: Final = {
    "pid": int,
    "name": str,
    "held": int,
    "total": int,
    "limit": int,
    "at": float,
}


def _well_formed(kill: object) -> bool:
    return isinstance(kill, dict) and all(
        isinstance(kill.get(field), kind) for field, kind in _FIELDS.items()
    )


def read_kills(path: Path) -> Sequence[Mapping[str, Any]]:
    """
    The kills noted in *path* (the latest :data:`_KEEP`), oldest first.
    """
    kills = (read_note(path) or {}).get("kills")
    if not isinstance(kills, list):
        return []
    return [kill for kill in kills if _well_formed(kill)]


class MemoryCap:
    """
    The watchdog's side: one :meth:`sample` per interval.

    *root* is the process the watchdog started (bubblewrap, or the kernel
    itself); the kernel is the first process below the chain of bubblewrap
    processes. *note* writes ``memory.json`` safely.
    """

    def __init__(
        self,
        *,
        limit: int,
        remote_id: str,
        root: int,
        note: Callable[..., None],
    ) -> None:
        self.limit = limit
        self._remote_id = remote_id
        self._root = root
        self._note = note
        self._me = os.getpid()
        self._group = os.getpgrp()
        self._kernel: int | None = None
        #: The bubblewrap processes above the kernel: never killed.
        self._infra: frozenset[int] = frozenset()
        #: Killed, not yet gone: their memory is on its way out.
        self._killed: set[int] = set()
        self._kills: list[dict[str, Any]] = []
        self._count = 0
        #: Processes of the session outside the watchdog's tree: their start.
        self._strays: dict[int, int] = {}
        self._samples = 0

    def _find_kernel(self, stats: Mapping[int, tuple[str, int, int]]) -> None:
        # Once found it stays: the kernel's pid does not change (the
        # launcher execs it), and user code cannot take its place.
        chain, pid = set(), self._root
        while pid in stats and stats[pid][0] == "bwrap":
            children = [p for p, s in stats.items() if s[1] == pid]
            if not children:
                return
            chain.add(pid)
            # bubblewrap's first child; orphans adopted later come after it.
            pid = min(children, key=lambda p: (stats[p][2], p))
        if pid in stats:
            self._kernel, self._infra = pid, frozenset(chain)

    def _members(self) -> set[int]:
        """
        The session's processes but the watchdog: its tree, and the strays
        the last search of the process table found (and their trees).
        """
        # In bubblewrap's PID namespace no process leaves the tree.
        sandboxed = bool(self._infra)
        if not sandboxed and self._samples % _SCAN_EVERY == 0:
            outside = set(session_pids(self._remote_id, self._group))
            outside -= _tree([self._me])
            self._strays = {
                pid: stat[2] for pid in outside if (stat := _stat(pid)) is not None
            }
        self._samples += 1
        # A stray whose pid now names another process is no longer ours.
        for pid, started in list(self._strays.items()):
            stat = _stat(pid)
            if stat is None or stat[2] != started:
                del self._strays[pid]
        members = _tree([self._me, *self._strays])
        members.discard(self._me)
        return members

    def sample(self) -> str | None:
        """
        Measure the session; past the cap kill its largest process. A reason
        to end the session (the kernel itself was the largest), or ``None``.
        """
        pids = self._members()
        stats = {p: s for p in pids if (s := _stat(p)) is not None}
        self._killed &= stats.keys()
        if self._kernel is None:
            self._find_kernel(stats)
        held: dict[int, int] = {}
        for pid in stats:
            if pid in self._killed:
                continue
            size = usage(pid)
            if size is not None:
                held[pid] = size
        total = sum(held.values())
        if total <= self.limit or self._kernel is None:
            return None
        candidates = {p: n for p, n in held.items() if p not in self._infra}
        if not candidates:
            return None
        # The largest; on a tie, not the kernel.
        victim = max(candidates, key=lambda p: (candidates[p], p != self._kernel))
        if victim == self._kernel:
            return (
                f"memory limit of {_mib(self.limit)} exceeded (the session held "
                f"{_mib(total)}): the watchdog killed the kernel, the largest "
                f"process ({_mib(held[victim])})"
            )
        kill = {
            "pid": victim,
            "name": stats[victim][0],
            "held": held[victim],
            "total": total,
            "limit": self.limit,
            "at": time.time(),
        }
        # Noted before the kill: whoever sees the process gone finds why.
        self._kills = [*self._kills, kill][-_KEEP:]
        self._count += 1
        self._note(kills=self._kills, count=self._count)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)
        self._killed.add(victim)
        return None
