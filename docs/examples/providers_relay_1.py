"""
The relay provider: a relay session through its handle.

Configured from the environment (TETHER_RELAY_API_TOKEN, and
TETHER_RELAY_BASE_URL for the emulator that `tether emulate relay` serves).
"""

import anyio

import tether
from tether_relay import RelayProvider


async def main() -> None:
    async with (
        tether.SessionManager() as manager,
        manager.session(RelayProvider, users=["1.1.1.1"], lifetime=600) as relay,
    ):
        player = await relay.authorize_user("8.8.8.8")  # RelayUser, with its token
        print(player.ip)  # 8.8.8.8
        print(await relay.revoke_user("8.8.8.8"))  # True


if __name__ == "__main__":
    anyio.run(main)
