"""
The sandbox provider: work inside a session, through the provider's methods.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import anyio

import tether
from tether_sandbox import SandboxProvider


async def main() -> None:
    async with tether.SessionManager() as manager:
        session = await manager.create("sandbox", env={"A": "a value"})
        sandbox = manager.provider("sandbox")
        assert isinstance(sandbox, SandboxProvider)
        r = await sandbox.execute(session, "import os\nprint(os.environ['A'])")
        r = await sandbox.execute(
            session, command="ls -la", language="bash", exec_timeout=120
        )
        task = await sandbox.execute_async(session, "print('heavy')")
        state = await sandbox.execution(
            task
        )  # one poll: Execution(is_complete, result)
        with anyio.fail_after(300):
            r = await sandbox.wait_execution(task, poll_interval=1.0)
        status = await sandbox.status(session)  # SandboxStatus, raw status endpoint
        print(r.stdout.strip(), state.is_complete in (True, False), status is not None)
        await manager.close(session)


if __name__ == "__main__":
    anyio.run(main)
