"""
The Morpheus provider: failover by model, in lease mode.

Against the emulator of today's gateway (no session routes), in process, so it
can make the pool's llama provider fail.
"""

import anyio

import tether
from tether.exceptions import ProviderError
from tether.testing import serve_asgi
from tether_morpheus import MorpheusProvider
from tether_morpheus.emulator import MorpheusEmulator


KEY = "sk-AbC123." + "0" * 64  # a key the emulator accepts
HI = [{"role": "user", "content": "hi"}]


async def main() -> None:
    today = MorpheusEmulator(api_keys=[KEY], session_endpoints=False)
    async with serve_asgi(today.app) as server:
        config = {"morpheus": {"base_url": server.url, "api_key": KEY}}
        async with tether.SessionManager(
            config=config, health_checks=False, environ={}
        ) as manager:
            morpheus = manager.provider(MorpheusProvider)
            candidates = await morpheus.failover_candidates(
                "llama-3.3-70b", fallback_models=["mistral-31-24b"]
            )
            s = await manager.create(
                tether.FailoverPolicy(candidates=candidates, recreate_lost=True),
                lifetime=3600,
            )
            today.fail_model("llama-3.3-70b", "provider_closed_connection")
            healths = []
            for _ in range(3):
                # Chats on s keep failing: the pool's llama provider is down.
                try:
                    await morpheus.chat(s, HI)
                except ProviderError:
                    pass
                healths.append((await manager.ping(s)).status.value)
            assert healths == ["degraded", "degraded", "gone"]  # s is LOST
            new = await manager.get((await manager.get(s.id)).data["replaced_by"])
            assert new.params["model"] == "mistral-31-24b"  # a lease on mistral


if __name__ == "__main__":
    anyio.run(main)
