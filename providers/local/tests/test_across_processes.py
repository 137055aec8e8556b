"""
Sessions outlive the manager that made them, but not their lifetime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio

import tether

from .conftest import make_manager, processes_after, session_processes


LIFETIME = 30.0


async def _start_worker(dirs: dict[str, str]) -> tuple[subprocess.Popen[str], dict]:
    # A plain Popen: the worker is killed, never awaited.
    worker = subprocess.Popen(  # noqa: ASYNC220, S603
        [
            sys.executable,
            str(Path(__file__).with_name("_worker.py")),
            dirs["state_dir"],
            dirs["runtime_dir"],
            str(LIFETIME),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    with anyio.fail_after(120):
        line = await anyio.to_thread.run_sync(worker.stdout.readline)
    worker.stdout.close()
    return worker, json.loads(line)


async def test_a_killed_manager_leaves_a_session_others_find(
    dirs: dict[str, str],
) -> None:
    """
    After kill -9 of the manager that made it, another manager finds the
    session by tether's id, lists it and reconciles it as an orphan; and the
    session's watchdog still ends it at its deadline, with nobody watching.
    """
    worker, made = await _start_worker(dirs)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    remote_id, pgid = made["remote_id"], made["pgid"]

    async with make_manager(dirs) as manager:
        provider = manager.provider("local")
        found = await provider.find(made["tether_id"])
        listed = [r.id for r in await provider.list()]
        report = await manager.reconcile(orphans="report", grace=0)
        alive = session_processes(remote_id, pgid)
        left = await processes_after(remote_id, pgid, wait=LIFETIME + 60)
        ended = await provider.find(made["tether_id"])
        swept = await provider.list()

    assert found is not None
    assert remote_id == found.id
    assert tether.SessionState.ACTIVE == found.state
    assert {"job": "worker"} == dict(found.labels)
    assert [remote_id] == listed
    assert [("orphan", remote_id)] == [(a.kind, a.remote_id) for a in report.actions]
    assert alive
    assert [] == left
    assert ended is not None
    assert tether.SessionState.LOST == ended.state
    assert "deadline" in (ended.raw_state or "")
    assert [] == list(swept)
    assert [] == list(Path(dirs["state_dir"]).glob("*.json"))  # noqa: ASYNC240


async def test_reconcile_closes_what_a_dead_manager_left(
    dirs: dict[str, str],
) -> None:
    """
    reconcile (orphans closed) ends a session whose manager was killed.
    """
    worker, made = await _start_worker(dirs)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    async with make_manager(dirs) as manager:
        report = await manager.reconcile(grace=0)
        left = await processes_after(made["remote_id"], made["pgid"])
        listed = await manager.provider("local").list()

    assert [("closed", made["remote_id"])] == [
        (a.kind, a.remote_id) for a in report.actions
    ]
    assert [] == left
    assert [] == list(listed)
