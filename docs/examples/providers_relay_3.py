"""
The relay provider: its emulator, in process, on a manual clock.
"""

import anyio

import tether
from tether.testing import ManualClock, serve_asgi
from tether_relay.emulator import RelayEmulator


async def main() -> None:
    clock = ManualClock()
    # ready_delay=0: relays are ready at once (the default, 2.0, keeps them
    # initializing for two seconds of the emulator's clock).
    emulator = RelayEmulator(clock=clock.time, tokens=("relay-token",), ready_delay=0.0)
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            config={"relay": {"base_url": server.url, "api_token": "relay-token"}},
            clock=clock,
            environ={},
        ) as manager:
            s = await manager.create("relay", users=["1.1.1.1"], lifetime=600)
            assert emulator.live_sessions() == [s.remote_id]
            await manager.close(s)  # DELETE
            assert emulator.live_sessions() == []


if __name__ == "__main__":
    anyio.run(main)
