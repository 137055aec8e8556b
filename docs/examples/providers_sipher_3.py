"""
The Sipher provider: Sipher's other routes, bound to a session.

Configured from the environment (TETHER_SIPHER_API_KEY, and
TETHER_SIPHER_BASE_URL for the emulator that `tether emulate sipher` serves).
"""

import anyio
import httpx

import tether
from tether_sipher import SipherProvider


async def main() -> None:
    compare = {"operation": "stealth_privacy"}
    async with tether.SessionManager() as manager:
        session = await manager.create("sipher", chain="solana")
        sipher = manager.provider(SipherProvider)  # typed as its own class

        # A client for Sipher's other routes, bound to the session:
        async with sipher.bound_client(session) as client:
            r = await client.post("/v1/backends/compare", json=compare)

        # One request through the provider's own client (error statuses raise
        # tether errors):
        r = await sipher.session_request(
            session, "POST", "/v1/backends/compare", json=compare
        )

        # Or bind a client you build yourself (an httpx.Auth flow; async
        # clients only):
        auth = sipher.session_auth(session)  # the API key and X-Session-Id
        base_url = sipher.config.base_url
        async with httpx.AsyncClient(base_url=base_url, auth=auth) as client:
            r = await client.post("/v1/backends/compare", json=compare)
            print(r.status_code)  # 200
        await manager.close(session)


if __name__ == "__main__":
    anyio.run(main)
