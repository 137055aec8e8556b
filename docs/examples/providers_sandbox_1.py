"""
The sandbox provider: a session and code run in it.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import anyio

import tether
from tether_sandbox import SandboxProvider


async def main() -> None:
    async with (
        tether.SessionManager() as manager,
        manager.session(
            SandboxProvider, lifetime=600, vcpu_count=4, memory_mb=2048
        ) as sb,
    ):
        result = await sb.execute("print('hello')")
        print(result.stdout, end="")  # hello


if __name__ == "__main__":
    anyio.run(main)
