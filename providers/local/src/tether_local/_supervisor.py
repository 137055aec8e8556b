"""
The watchdog of one session: a small process that outlives any manager.

``python -m tether_local._supervisor SPEC.json``, started in a new session, so
its process group is the session's. It starts the kernel's command, and ends
the whole group, itself included, when the kernel exits or the deadline
passes, whichever comes first, and even when every manager has died: no
process of the session outlives its lifetime. Why it ended goes to the spec's
``exit_file`` first, for pings to report.

Meanwhile it holds the session to its memory cap (``memory_limit`` bytes for
all its processes together, see :mod:`tether_local._memory`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tether_local._memory import SAMPLE_INTERVAL, MemoryCap


def _reason(returncode: int) -> str:
    # bubblewrap exits 128+N when its command dies of signal N.
    signum = -returncode if returncode < 0 else returncode - 128
    if returncode < 0 or 0 < signum < signal.NSIG:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        hint = " (memory or process limit?)" if name == "SIGKILL" else ""
        return f"kernel killed by {name}{hint}"
    return f"kernel exited with status {returncode}"


def _record(path: Path, **fields: Any) -> None:
    # The directory is the kernel's too: a file it planted there (a symlink
    # to somewhere we may write) is replaced, never written through. Best
    # effort: a note that cannot be written must not stop the watchdog.
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(tmp, flags, 0o600), "w") as f:
            f.write(json.dumps({**fields, "at": time.time()}))
        tmp.replace(path)


def _end_group() -> None:
    # SIGKILL for everyone in the group, this process too: nothing lingers.
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _hold(cap: MemoryCap, exit_file: Path) -> None:
    try:
        reason = cap.sample()
    except (OSError, ValueError, IndexError):
        return  # a process table read mid-change: the next sample decides
    if reason is not None:
        _record(exit_file, reason=reason)
        _end_group()


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    exit_file = Path(spec["exit_file"])
    deadline = float(spec["deadline"])
    signal.signal(signal.SIGTERM, lambda *_: _end_group())
    with Path(spec["log_file"]).open("ab") as log:
        child = subprocess.Popen(  # noqa: S603
            spec["argv"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=spec["cwd"],
            env=spec["env"],
        )
    limit = int(spec.get("memory_limit", 0))
    cap = (
        MemoryCap(
            limit=limit,
            remote_id=spec["session"],
            root=child.pid,
            note=functools.partial(_record, Path(spec["memory_file"])),
        )
        if limit > 0
        else None
    )
    while True:
        remaining = deadline - time.time()
        if remaining <= 0:
            _record(exit_file, reason="deadline reached: the watchdog ended it")
            _end_group()
        try:
            returncode = child.wait(
                timeout=min(remaining, 1.0 if cap is None else SAMPLE_INTERVAL)
            )
        except subprocess.TimeoutExpired:
            if cap is not None:
                _hold(cap, exit_file)
            continue
        _record(exit_file, reason=_reason(returncode), returncode=returncode)
        _end_group()


if __name__ == "__main__":
    main(sys.argv[1:])
