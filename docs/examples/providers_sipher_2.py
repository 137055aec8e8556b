"""
The Sipher provider: requests through a session's handle carry its id.

Configured from the environment (TETHER_SIPHER_API_KEY, and
TETHER_SIPHER_BASE_URL for the emulator that `tether emulate sipher` serves).
"""

import anyio

import tether
from tether_sipher import SipherProvider


async def main() -> None:
    compare = {"operation": "stealth_privacy"}
    async with (
        tether.SessionManager() as manager,
        manager.session(SipherProvider, chain="cosmos") as sip,
    ):
        response = await sip.request("POST", "/v1/backends/compare", json=compare)
        print(response.status_code)  # 200
        async with sip.client() as client:  # an httpx client bound to the session
            response = await client.post("/v1/backends/compare", json=compare)
            print(response.status_code)  # 200


if __name__ == "__main__":
    anyio.run(main)
