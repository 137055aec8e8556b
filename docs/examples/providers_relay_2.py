"""
The relay provider: its operations, by name.

Configured from the environment (TETHER_RELAY_API_TOKEN, and
TETHER_RELAY_BASE_URL for the emulator that `tether emulate relay` serves).
"""

import anyio

import tether
from tether_relay import RelayProvider


async def main() -> None:
    async with tether.SessionManager() as manager:
        # Create: users are the players' public IPs (host first, by convention).
        s = await manager.create(
            "relay",
            lifetime=2 * 3600,
            users=["1.1.1.1", "8.8.8.8"],
            filters=[{"field": "region", "values": ["eu"], "filter_type": "any"}],
            webhook_url="https://example.com/relay-ready",
        )
        print(s.data["users"])  # ['1.1.1.1', '8.8.8.8']
        print(sorted(s.data["relay"]))  # ['host', ..., 'server_port', ...]

        health = await manager.ping(s)  # ALIVE when ready
        print(health.status)  # alive

        # Late joiners and leavers.
        s = await manager.update(s, authorize=["9.9.9.9"], revoke=["8.8.8.8"])

        # Tokens, fetched when you need them (never stored on the session).
        relay = manager.provider(RelayProvider)  # typed as its own class
        creds = await relay.credentials(s)
        assert creds.session_token is not None  # the session's token
        assert creds.token_for("9.9.9.9") is not None  # that player's token

        await manager.close(s)  # DELETE, 204; 404 counts as closed


if __name__ == "__main__":
    anyio.run(main)
