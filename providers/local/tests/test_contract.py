"""
The local provider's contract: real code in a persistent, isolated kernel,
and nothing of the session left on the machine after it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tether.abc import ExecutionResult
from tether.exceptions import InvalidParameterError, RemoteNotFoundError
from tether_local import LocalProvider, _sandbox

from .conftest import make_manager, needs_bwrap, processes_after, session_processes


@pytest.fixture(name="listener")
def _listener() -> Iterator[int]:
    """
    A TCP port on this machine's loopback that accepts connections.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(8)
        yield server.getsockname()[1]


@needs_bwrap
async def test_the_contract(manager: tether.SessionManager, listener: int) -> None:
    """
    State carries across executions, the sandbox has no network by default,
    and once the block ends no process of the session is left.
    """
    async with manager.session(LocalProvider, memory_mb=256) as sb:
        remote_id, pgid = sb.remote_id, sb.session.data["pgid"]
        assert remote_id is not None
        running = session_processes(remote_id, pgid)
        await sb.execute("x = 41")
        out = await sb.execute("print(x + 1)")
        blocked = await sb.execute(
            f"import socket; socket.create_connection(('127.0.0.1', {listener}), 1)"
        )

    assert isinstance(out, ExecutionResult)
    assert "42\n" == out.stdout
    assert "" == out.stderr
    assert out.execution_time is not None
    assert "OSError" in blocked.stderr or "Error" in blocked.stderr, blocked
    assert "Network is unreachable" in blocked.stderr or "refused" in blocked.stderr
    assert running  # the check below can see the session's processes
    assert [] == await processes_after(remote_id, pgid)


@needs_bwrap
async def test_the_sandbox_holds(
    manager: tether.SessionManager, dirs: dict[str, str]
) -> None:
    """
    One isolated session, checked in turn: a read-only system and a private
    /tmp, a writable working directory that shell commands run in, a fork
    bomb held at the process limit, an allocation past the memory limit
    refused, a timeout that interrupts the kernel and not the session, output
    cut at the cap, bad arguments refused before anything runs; and a kernel
    that dies makes the session LOST, saying why.
    """
    async with manager.session(
        LocalProvider, memory_mb=256, processes=64, lifetime=300
    ) as sb:
        readonly = await sb.execute("open('/usr/tether-test', 'w')")
        ls_tmp = await sb.execute(command="ls -A /tmp")
        wrote = await sb.execute(command="echo hi > note && cat note && pwd")
        bomb = await sb.execute(
            "import os, time\n"
            "pids, error = [], None\n"
            "for _ in range(1000):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError as exc:\n"
            "        error = exc\n"
            "        break\n"
            "    if pid == 0:\n"
            "        time.sleep(60)\n"
            "        os._exit(0)\n"
            "    pids.append(pid)\n"
            "for pid in pids:\n"
            "    os.kill(pid, 9)\n"
            "    os.waitpid(pid, 0)\n"
            "print(len(pids), type(error).__name__)"
        )
        memory = await sb.execute("b = bytearray(512 * 1024 * 1024)")
        slow = await sb.execute("y = 1\nimport time; time.sleep(600)", exec_timeout=2)
        after = await sb.execute("print(y)")
        loud = await sb.execute("print('x' * 2_000_000)")
        with pytest.raises(InvalidParameterError) as both:
            await sb.execute("print(1)", command="ls")
        with pytest.raises(InvalidParameterError) as no_time:
            await sb.execute("print(1)", exec_timeout=0)
        with pytest.raises(RemoteNotFoundError):
            await sb.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        health = await manager.ping(sb)
        lost = await manager.get(sb.id)

    assert "Read-only file system" in readonly.stderr
    # A tmpfs of its own: nothing of the machine's /tmp but the way to the
    # session's own runtime directory (and to the interpreter, if it lives there).
    tmp = Path("/tmp")  # noqa: S108
    ways = {
        p.relative_to(tmp).parts[0]
        for p in [Path(dirs["runtime_dir"]), *_sandbox._interpreter_paths()]
        if p.is_relative_to(tmp) and p != tmp
    }
    assert sorted(ways) == sorted(ls_tmp.stdout.split())
    assert wrote.stdout.startswith("hi\n")
    assert wrote.stdout.strip().endswith("/work")
    assert 0 == wrote.raw["exit_status"]
    forked, error = bomb.stdout.split()
    assert int(forked) < 64
    assert "BlockingIOError" == error
    assert "MemoryError" in memory.stderr
    assert "KeyboardInterrupt" in slow.stderr
    assert "timeout" == slow.raw["status"]
    assert "1\n" == after.stdout
    assert loud.raw["truncated"]
    assert "[tether: output cut at" in loud.stdout
    assert "code" == both.value.field
    assert "exec_timeout" == no_time.value.field
    assert tether.HealthStatus.GONE == health.status
    assert "SIGKILL" in (health.raw_state or "")
    assert tether.SessionState.LOST == lost.state
    assert "SIGKILL" in (lost.raw_state or "")


async def test_without_isolation_code_runs_all_the_same(
    dirs: dict[str, str], listener: int
) -> None:
    """
    isolation="none" runs the same kernel without a sandbox (no security
    boundary): state carries, and the network is the machine's.
    """
    async with (
        make_manager(dirs) as manager,
        manager.session(LocalProvider, isolation="none") as sb,
    ):
        await sb.execute("import socket")
        reached = await sb.execute(
            f"socket.create_connection(('127.0.0.1', {listener}), 5).close()\n"
            "print('connected')"
        )
        remote_id = sb.remote_id
    assert "connected\n" == reached.stdout, reached.stderr
    assert remote_id is not None
    assert [] == await processes_after(remote_id, None)


@needs_bwrap
async def test_network_when_asked(
    manager: tether.SessionManager, listener: int
) -> None:
    """
    network=True keeps the sandbox but shares the machine's network.
    """
    async with manager.session(LocalProvider, network=True) as sb:
        reached = await sb.execute(
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {listener}), 5).close()\n"
            "print('connected')"
        )
        readonly = await sb.execute("open('/etc/tether-test', 'w')")

    assert "connected\n" == reached.stdout, reached.stderr
    assert "Read-only file system" in readonly.stderr


def test_one_execution_result_for_both_providers() -> None:
    """
    The sandbox and local providers answer with the same class, from
    tether.abc, and both are CodeExecutors with ExecutingHandles.
    """
    import tether_sandbox  # noqa: PLC0415
    from tether.abc import CodeExecutor, ExecutingHandle  # noqa: PLC0415
    from tether_local import LocalHandle  # noqa: PLC0415

    assert tether_sandbox.ExecutionResult is ExecutionResult
    assert issubclass(LocalProvider, CodeExecutor)
    assert issubclass(tether_sandbox.SandboxProvider, CodeExecutor)
    assert issubclass(LocalHandle, ExecutingHandle)
    assert issubclass(tether_sandbox.SandboxHandle, ExecutingHandle)
