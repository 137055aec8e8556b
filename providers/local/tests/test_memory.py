"""
memory_mb caps a session, not each of its processes: many processes that each
stay under the per-process limit are still held, together, to memory_mb.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import tether
from tether.exceptions import RemoteNotFoundError
from tether_local import LocalProvider

from .conftest import NO_BWRAP, make_manager, processes_after, session_processes


_MIB = 1024 * 1024

#: Four children of the kernel, each holding 80 MiB (under the 256 MiB data
#: limit of each process), 400 MiB or so with the kernel. The execution ends
#: when the first of them dies: at once with the cap, never without it (they
#: sleep past the exec_timeout).
_CHILDREN = """
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        hold = b"x" * (80 << 20)
        time.sleep(600)
        os._exit(0)
    children.append(pid)
pid, status = os.wait()
print(pid in children, os.WIFSIGNALED(status) and os.WTERMSIG(status))
"""

#: The kernel holds 90 MiB, three programs it starts 60 MiB each: the kernel
#: is the largest process of a session over its cap.
_KERNEL = """
import subprocess, sys, time
hold = b"x" * (90 << 20)
programs = [
    subprocess.Popen(
        [sys.executable, "-c", "import time; hold = b'x' * (60 << 20); time.sleep(600)"]
    )
    for _ in range(3)
]
time.sleep(600)
"""

isolations = pytest.mark.parametrize(
    "isolation",
    [
        pytest.param(
            "bwrap",
            marks=pytest.mark.skipif(NO_BWRAP is not None, reason=str(NO_BWRAP)),
        ),
        "none",
    ],
)


def _held(pid: int) -> int:
    """
    The proportional set size of *pid* (pages shared after a fork count
    once over the processes sharing them), 0 once it is gone.
    """
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next(
        (int(line.split()[1]) * 1024 for line in rollup.splitlines() if "Pss:" in line),
        0,
    )


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _is_kernel_process(pid: int) -> bool:
    try:
        return b"ipykernel_launcher" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kernel(pids: list[int]) -> int:
    """
    The kernel among a session's processes: an ipykernel whose parent is none
    (its forks carry the same command line).
    """
    (kernel,) = [
        pid
        for pid in pids
        if _is_kernel_process(pid) and not _is_kernel_process(_parent(pid) or 0)
    ]
    return kernel


async def _settled(remote_id: str, pgid: int, limit: int) -> int:
    """
    What the session's processes (but its watchdog) hold once they are within
    *limit*, or after a generous wait.
    """
    total = 0
    for _ in range(600):
        total = sum(
            _held(pid) for pid in session_processes(remote_id, pgid) if pid != pgid
        )
        if total <= limit:
            break
        await anyio.sleep(0.1)
    return total


@isolations
async def test_children_past_the_cap_are_killed_the_kernel_lives(
    dirs: dict[str, str], isolation: str
) -> None:
    """
    memory_mb=256, and four children of the kernel holding 80 MiB each: the
    session's processes together come back under 256 MiB, because the
    largest children are killed (the execution, raw and the next ping say
    why); the kernel is the same process, and answers.
    """
    async with (
        make_manager(dirs) as manager,
        manager.session(
            LocalProvider, memory_mb=256, isolation=isolation, lifetime=600
        ) as sb,
    ):
        remote_id, pgid = sb.remote_id, sb.session.data["pgid"]
        assert remote_id is not None
        kernel = _kernel(session_processes(remote_id, pgid))
        over = await sb.execute(_CHILDREN, exec_timeout=120)
        total = await _settled(remote_id, pgid, 256 * _MIB)
        kernel_after = _kernel(session_processes(remote_id, pgid))
        children = [  # the kernel's children still alive
            pid for pid in session_processes(remote_id, pgid) if _parent(pid) == kernel
        ]
        later = await sb.execute("print(6 * 7)")
        health = await manager.ping(sb)

    assert "True 9\n" == over.stdout, over.stderr  # a child, killed by SIGKILL
    assert "memory limit of 256 MiB exceeded" in over.stderr
    kills = over.raw["memory_kills"]
    assert kills
    assert all(256 * _MIB == kill["limit"] < kill["total"] for kill in kills)
    assert total <= 256 * _MIB
    assert kernel == kernel_after
    assert len(children) < 4
    assert "42\n" == later.stdout
    assert tether.HealthStatus.ALIVE == health.status
    assert "memory limit of 256 MiB exceeded" in (health.detail or "")
    assert [] == await processes_after(remote_id, pgid)


@isolations
async def test_a_kernel_past_the_cap_ends_the_session(
    dirs: dict[str, str], isolation: str
) -> None:
    """
    When the kernel itself is the largest process of a session past its cap,
    the kernel is killed and the session ends: the execution raises, the
    ping and the session's raw state say why, and nothing of it is left.
    """
    async with (
        make_manager(dirs) as manager,
        manager.session(
            LocalProvider, memory_mb=256, isolation=isolation, lifetime=600
        ) as sb,
    ):
        remote_id, pgid = sb.remote_id, sb.session.data["pgid"]
        assert remote_id is not None
        with pytest.raises(RemoteNotFoundError) as died:
            await sb.execute(_KERNEL, exec_timeout=120)
        health = await manager.ping(sb)
        lost = await manager.get(sb.id)
        left = await processes_after(remote_id, pgid)

    reason = "memory limit of 256 MiB exceeded"
    assert reason in str(died.value)
    assert "killed the kernel" in str(died.value)
    assert tether.HealthStatus.GONE == health.status
    assert reason in (health.raw_state or "")
    assert tether.SessionState.LOST == lost.state
    assert reason in (lost.raw_state or "")
    assert [] == left
