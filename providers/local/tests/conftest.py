"""
Fixtures of the local provider's tests: private state and runtime directories,
a manager, and the machine's own word on which processes run (``/proc``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import tether
from tether import ProviderRegistry, RetryPolicy
from tether_local import LocalProvider


#: Why isolation tests cannot run here, or None.
NO_BWRAP = (
    None
    if shutil.which("bwrap")
    else "bubblewrap (bwrap) is not installed: the isolation tests need it "
    "(Debian: apt-get install bubblewrap)"
)

needs_bwrap = pytest.mark.skipif(
    NO_BWRAP is not None and not os.environ.get("CI"), reason=str(NO_BWRAP)
)


def session_processes(remote_id: str, pgid: int | None = None) -> list[int]:
    """
    Every live process of a session, read from ``/proc`` independently of the
    provider: the ones carrying its marker variable, and its process group.
    """
    marker = f"TETHER_LOCAL_SESSION={remote_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if state == "Z":
            continue
        if marker in environ.split(b"\0") or (pgid is not None and int(group) == pgid):
            found.append(int(entry.name))
    return found


async def processes_after(
    remote_id: str, pgid: int | None, wait: float = 60
) -> list[int]:
    """
    The session's processes once they are gone, or those left after *wait*
    seconds (liveness with a generous margin: a loaded machine reaps slowly).
    """
    for _ in range(int(wait * 10)):
        if not session_processes(remote_id, pgid):
            break
        await anyio.sleep(0.1)
    return session_processes(remote_id, pgid)


@pytest.fixture(name="dirs")
def _dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """
    A state directory and a runtime directory of this test's own (short: the
    kernel's unix sockets live in the runtime directory).
    """
    root = tmp_path_factory.mktemp("lp")
    root.chmod(0o755)
    return {"state_dir": str(root / "state"), "runtime_dir": str(root / "run")}


def make_manager(config: dict[str, Any], **kw: Any) -> tether.SessionManager:
    """
    A manager with the local provider only, and quick retries.
    """
    registry = ProviderRegistry(entry_points=False)
    registry.register("local", LocalProvider)
    return tether.SessionManager(
        registry=registry,
        config={"local": config},
        retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        environ={},
        **kw,
    )


@pytest.fixture(name="manager")
async def _manager(dirs: dict[str, str]) -> AsyncIterator[tether.SessionManager]:
    """
    A manager whose local sessions live in the test's directories.
    """
    async with make_manager(dirs) as manager:
        yield manager
