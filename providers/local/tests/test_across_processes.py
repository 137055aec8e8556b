"""
Sessions outlive the manager that made them, but not their lifetime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

import tether

from .conftest import make_manager, processes_after, session_processes


def _start_worker(dirs: dict[str, str], lifetime: float) -> dict[str, Any]:
    """
    A manager in a subprocess that creates a session, then is killed -9.
    """
    worker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            str(Path(__file__).with_name("_worker.py")),
            dirs["state_dir"],
            dirs["runtime_dir"],
            str(lifetime),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    try:
        line = worker.stdout.readline()
    finally:
        worker.stdout.close()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    made: dict[str, Any] = json.loads(line)
    return made


async def test_a_killed_manager_leaves_a_session_others_find(
    dirs: dict[str, str],
) -> None:
    """
    After kill -9 of the manager that made it, another manager finds the
    session by tether's id, gets it by its own, lists it, reports it as an
    orphan, and then reconcile closes it: nothing of it is left.
    """
    with anyio.fail_after(180):
        made = await anyio.to_thread.run_sync(_start_worker, dirs, 600.0)
    remote_id, pgid = made["remote_id"], made["pgid"]

    async with make_manager(dirs) as manager:
        provider = manager.provider("local")
        found = await provider.find(made["tether_id"])
        listed = [r.id for r in await provider.list()]
        now = datetime.now(UTC)
        got = await provider.get(
            tether.Session(
                id=made["tether_id"],
                provider="local",
                state=tether.SessionState.ACTIVE,
                created_at=now,
                updated_at=now,
                remote_id=remote_id,
            )
        )
        reported = await manager.reconcile(orphans="report", grace=0)
        alive = session_processes(remote_id, pgid)
        closed = await manager.reconcile(grace=0)
        left = await processes_after(remote_id, pgid)
        after = await provider.list()

    assert found is not None
    assert remote_id == found.id
    assert tether.SessionState.ACTIVE == found.state
    assert {"job": "worker"} == dict(found.labels)
    assert [remote_id] == listed
    assert got is not None
    assert (remote_id, tether.SessionState.ACTIVE) == (got.id, got.state)
    assert made["tether_id"] == got.tether_id
    assert [("orphan", remote_id)] == [(a.kind, a.remote_id) for a in reported.actions]
    assert alive
    assert [("closed", remote_id)] == [(a.kind, a.remote_id) for a in closed.actions]
    assert [] == left
    assert [] == list(after)


def test_the_watchdog_ends_a_session_nobody_watches(dirs: dict[str, str]) -> None:
    """
    With its manager killed -9, a session's watchdog still kills every
    process of it at its deadline, and records why.

    Synchronous: no event loop here, only processes (the worker's manager
    runs on asyncio).
    """
    lifetime = 30.0
    made = _start_worker(dirs, lifetime)
    remote_id, pgid = made["remote_id"], made["pgid"]
    alive = session_processes(remote_id, pgid)
    # Liveness with a generous margin past the deadline: a loaded machine.
    give_up = time.monotonic() + lifetime + 60
    while session_processes(remote_id, pgid) and time.monotonic() < give_up:
        time.sleep(0.2)
    left = session_processes(remote_id, pgid)
    exit_file = Path(dirs["runtime_dir"]) / remote_id / "exit.json"
    reason = json.loads(exit_file.read_text())["reason"]

    assert alive
    assert [] == left
    assert "deadline" in reason
