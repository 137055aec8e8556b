"""
The Morpheus provider: chat in a session through its handle, plain, streamed and
with tools.

Configured from the environment (TETHER_MORPHEUS_API_KEY, and
TETHER_MORPHEUS_BASE_URL for the emulator that `tether emulate morpheus` serves).
"""

import anyio

import tether
from tether_morpheus import MorpheusProvider


async def main() -> None:
    hello = [{"role": "user", "content": "Hello"}]
    weather = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
    async with (
        tether.SessionManager() as manager,
        manager.session(MorpheusProvider, model="llama-3.3-70b", lifetime=600) as m,
    ):
        reply = await m.chat(hello, temperature=0.2)
        print(reply.content)

        stream = await m.chat(hello, stream=True)
        async with stream:
            async for chunk in stream:
                print(chunk.content, end="")
        print()

        reply = await m.chat(hello, tools=[weather])
        for call in reply.tool_calls:
            print(call.name, call.arguments)


if __name__ == "__main__":
    anyio.run(main)
