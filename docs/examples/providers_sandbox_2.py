"""
The sandbox provider: a session through its handle.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import anyio

import tether
from tether_sandbox import SandboxProvider


async def main() -> None:
    async with (
        tether.SessionManager() as manager,
        manager.session(SandboxProvider, vcpu_count=2) as sb,
    ):
        await sb.execute("x = 42")
        out = await sb.execute("print(x)")  # ExecutionResult: state carries over
        task = await sb.execute_async("print(1)")
        done = await sb.wait(task)
        await sb.upload("in.csv", b"a,b\n")  # and download, app_url, egress,
        usage = await sb.usage()  # set_egress, session_info: see below
        print(out.stdout.strip(), done.stdout.strip(), usage is not None)


if __name__ == "__main__":
    anyio.run(main)
