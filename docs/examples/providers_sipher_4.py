"""
The Sipher provider: its emulator, in process, on a manual clock.
"""

import anyio

import tether
from tether.testing import ManualClock, serve_asgi
from tether_sipher.emulator import PRO_KEY, SipherEmulator


async def main() -> None:
    clock = ManualClock()
    emulator = SipherEmulator(clock=clock.time, rate_limit=100)
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            config={"sipher": {"base_url": server.url, "api_key": PRO_KEY}},
            clock=clock,
            environ={},
        ) as manager:
            s = await manager.create("sipher", lifetime=3600)
            assert emulator.live_sessions() == {s.remote_id}
            await clock.advance(3601)  # the session is now 404 SESSION_NOT_FOUND
            assert emulator.live_sessions() == set()


if __name__ == "__main__":
    anyio.run(main)
