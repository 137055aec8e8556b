"""
The Morpheus provider: chat through a session's handle.

Configured from the environment (TETHER_MORPHEUS_API_KEY, and
TETHER_MORPHEUS_BASE_URL for the emulator that `tether emulate morpheus` serves).
"""

import anyio

import tether
from tether_morpheus import MorpheusProvider


async def main() -> None:
    async with (
        tether.SessionManager() as manager,
        manager.session(MorpheusProvider, model="llama-3.3-70b") as m,
    ):
        reply = await m.chat([{"role": "user", "content": "hi"}])
        print(reply.content)
        more = [{"role": "user", "content": "more"}]
        async with await m.chat(more, stream=True) as chunks:
            async for chunk in chunks:
                print(chunk.content, end="")
        print()


if __name__ == "__main__":
    anyio.run(main)
