"""
The Morpheus provider: its emulator, in process, on a manual clock.
"""

import anyio

import tether
from tether.testing import ManualClock, serve_asgi
from tether_morpheus.emulator import MorpheusEmulator


KEY = "sk-AbC123." + "0" * 64  # a key the emulator accepts


async def main() -> None:
    clock = ManualClock()
    emulator = MorpheusEmulator(clock=clock.time, api_keys=[KEY])
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            config={"morpheus": {"base_url": server.url, "api_key": KEY}},
            clock=clock,
            environ={},
        ) as manager:
            s = await manager.create("morpheus", model="llama-3.3-70b", lifetime=600)
            assert emulator.live_sessions() == [s.remote_id]
            await manager.close(s)
            assert emulator.live_sessions() == []


if __name__ == "__main__":
    anyio.run(main)
