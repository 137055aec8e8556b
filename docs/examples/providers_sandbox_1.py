"""
The sandbox provider: a session by name, and execute through the provider.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import anyio

import tether
from tether_sandbox import SandboxProvider


async def main() -> None:
    async with tether.SessionManager() as manager:
        session = await manager.create(
            "sandbox", lifetime=600, vcpu_count=4, memory_mb=2048
        )
        sandbox = manager.provider("sandbox")
        assert isinstance(sandbox, SandboxProvider)  # typed as its own class
        result = await sandbox.execute(session, "print('hello')")
        print(result.stdout, end="")  # hello
        await manager.close(session)


if __name__ == "__main__":
    anyio.run(main)
