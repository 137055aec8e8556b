"""
Real code on this machine: a local session's state carries across executions.
"""

import shutil
import tempfile

import anyio

import tether
from tether_local import LocalProvider


async def main() -> None:
    where = tempfile.mkdtemp(prefix="tl")
    config = {"local": {"state_dir": f"{where}/state", "runtime_dir": f"{where}/run"}}
    # Isolated when bubblewrap is installed; "none" is no security boundary.
    isolation = "bwrap" if shutil.which("bwrap") else "none"

    async with tether.SessionManager(config=config, environ={}) as manager:
        async with manager.session(
            LocalProvider, memory_mb=256, isolation=isolation
        ) as sb:
            await sb.execute("x = 41")
            out = await sb.execute("print(x + 1)")
            listing = await sb.execute(command="echo hi > note && ls")
            failed = await sb.execute("1 / 0")

    assert "42\n" == out.stdout
    assert "note\n" == listing.stdout
    assert 0 == listing.raw["exit_status"]
    assert "ZeroDivisionError" in failed.stderr  # a failing program is not an error
    shutil.rmtree(where)


if __name__ == "__main__":
    anyio.run(main)
