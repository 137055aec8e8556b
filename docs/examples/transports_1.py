"""
HTTP transports: the default.
"""

import anyio
import sniffio

import tether
from tether.testing import FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(registry=registry, clock=clock) as manager:
        await manager.create("fake")
        transport = manager.snapshot().providers["fake"].transport
    on_asyncio = sniffio.current_async_library() == "asyncio"
    assert transport == (
        "aiohttp" if on_asyncio else "httpx"
    )  # the fast extra is installed


if __name__ == "__main__":
    anyio.run(main)
