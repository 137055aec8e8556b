"""
A first session: a sandbox VM, created, used and closed.

The sandbox provider reads its configuration from the environment:
TETHER_SANDBOX_API_KEY, and TETHER_SANDBOX_BASE_URL for anything but the real
service (`tether emulate sandbox` prints both for its emulator).
"""

import anyio

import tether
from tether_sandbox import SandboxProvider


async def main() -> None:
    # Providers are found through their entry points.
    async with tether.SessionManager() as manager:
        async with manager.session(
            SandboxProvider, vcpu_count=2, labels={"job": "42"}
        ) as sb:
            # A typed ExecutionResult; retried where that is safe.
            out = await sb.execute("print(1)")
            # The live record: no secrets in it.
            print(out.stdout.strip(), sb.state)
            health = await manager.ping(sb)
            print(health.status)
        # Closed here, on error and on cancellation too: sb.execute() now
        # raises SessionEndedError before anything is sent.


if __name__ == "__main__":
    anyio.run(main)
