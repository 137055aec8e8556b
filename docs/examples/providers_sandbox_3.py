"""
The sandbox provider: work inside a session, through its handle.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import anyio

import tether
from tether_sandbox import SandboxProvider


async def main() -> None:
    async with (
        tether.SessionManager() as manager,
        manager.session(SandboxProvider, env={"A": "a value"}) as sb,
    ):
        r = await sb.execute("import os\nprint(os.environ['A'])")
        r = await sb.execute(command="ls -la", language="bash", exec_timeout=120)
        task = await sb.execute_async("print('heavy')")
        state = await sb.execution(task)  # one poll: Execution(is_complete, result)
        with anyio.fail_after(300):
            r = await sb.wait(task, poll_interval=1.0)
        # What has no handle method is on the provider, typed as its own class:
        status = await sb.provider.status(sb.session)  # the raw status endpoint
        print(r.stdout.strip(), state.is_complete in (True, False), status is not None)


if __name__ == "__main__":
    anyio.run(main)
