"""
The sandbox provider: its emulator, in process, on a manual clock.
"""

import anyio

import tether
from tether.testing import ManualClock, serve_asgi
from tether_sandbox.emulator import SandboxEmulator


async def main() -> None:
    clock = ManualClock()
    emulator = SandboxEmulator(
        clock=clock.time, api_keys=("instavm_sk_test",), max_sessions=None
    )
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            config={"sandbox": {"base_url": server.url, "api_key": "instavm_sk_test"}},
            clock=clock,
            environ={},
        ) as manager:
            s = await manager.create("sandbox", lifetime=600)
            assert s.remote_id in emulator.live_sessions()
            await manager.close(s)
        assert emulator.live_sessions() == set()


if __name__ == "__main__":
    anyio.run(main)
