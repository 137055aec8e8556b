"""
The Morpheus provider: failover across bids and models.

Against the emulator in process, so it can make the best bid's provider refuse.
"""

import anyio

import tether
from tether.testing import serve_asgi
from tether_morpheus import MorpheusProvider
from tether_morpheus.emulator import MorpheusEmulator


KEY = "sk-AbC123." + "0" * 64  # a key the emulator accepts


async def main() -> None:
    emulator = MorpheusEmulator(api_keys=[KEY])
    best = emulator.bids_for("llama-3.3-70b")[0]
    emulator.fail_provider(emulator.bid_provider(best))  # it refuses sessions
    async with serve_asgi(emulator.app) as server:
        config = {"morpheus": {"base_url": server.url, "api_key": KEY}}
        async with tether.SessionManager(config=config, environ={}) as manager:
            morpheus = manager.provider(MorpheusProvider)
            candidates = await morpheus.failover_candidates(
                "llama-3.3-70b", fallback_models=["mistral-31-24b"]
            )
            s = await manager.create(
                tether.FailoverPolicy(candidates=candidates, attempts_per_candidate=1),
                lifetime=900,
            )
            # {'bid_id': ...} of the bid that worked, or {'model': 'mistral-31-24b'}
            print(s.params)
            assert s.params.get("bid_id") != best


if __name__ == "__main__":
    anyio.run(main)
