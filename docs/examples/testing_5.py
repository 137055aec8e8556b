"""
Testing: a first-party provider's emulator, served on a loopback socket.
"""

import anyio

import tether
from tether.testing import ManualClock, serve_asgi
from tether_sandbox.emulator import SandboxEmulator


async def main() -> None:
    clock = ManualClock()
    emulator = SandboxEmulator(clock=clock.time, api_keys=("instavm_sk_test",))
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            config={"sandbox": {"base_url": server.url, "api_key": "instavm_sk_test"}},
            clock=clock,
            environ={},
        ) as manager:
            s = await manager.create("sandbox")
            assert emulator.live_sessions() == {s.remote_id}
        # The manager closed what it created on the way out.
        assert emulator.live_sessions() == set()


if __name__ == "__main__":
    anyio.run(main)
