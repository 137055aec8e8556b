"""
The Morpheus provider: creating sessions by model name, model id or bid.

Against the emulator in process, which knows the models' ids and bids.
"""

from typing import Any

import anyio

import tether
from tether.testing import serve_asgi
from tether_morpheus.emulator import MorpheusEmulator


KEY = "sk-AbC123." + "0" * 64  # a key the emulator accepts


async def main() -> None:
    emulator = MorpheusEmulator(api_keys=[KEY])
    model_id = emulator.model_id("llama-3.3-70b")  # 0x and 64 hex digits
    bid_id = emulator.bids_for("llama-3.3-70b")[0]  # one provider's bid
    async with serve_asgi(emulator.app) as server:
        config = {"morpheus": {"base_url": server.url, "api_key": KEY}}
        async with tether.SessionManager(config=config, environ={}) as manager:
            # A key has one session at a time: the manager admits the next
            # create once the last session closed.
            ways: list[dict[str, Any]] = [
                {"model": "llama-3.3-70b"},
                {"model": model_id},
                {"bid_id": bid_id},
            ]
            for params in ways:
                s = await manager.create("morpheus", lifetime=600, **params)
                assert emulator.active_session_for(KEY) == s.remote_id
                await manager.close(s)


if __name__ == "__main__":
    anyio.run(main)
