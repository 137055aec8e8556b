"""
The Sipher provider: an agent session with its defaults.

Configured from the environment (TETHER_SIPHER_API_KEY, and
TETHER_SIPHER_BASE_URL for the emulator that `tether emulate sipher` serves).
"""

import anyio

import tether


async def main() -> None:
    async with tether.SessionManager() as manager:
        session = await manager.create(
            "sipher",
            lifetime=3600,  # -> ttlSeconds
            chain="solana",
            privacy_level="shielded",
            rpc_provider="helius",
        )
        print(session.state)  # active
        await manager.close(session)


if __name__ == "__main__":
    anyio.run(main)
