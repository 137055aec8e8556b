"""
HTTP transports: choosing.
"""

import anyio
import httpx

import tether
from tether.testing import FakeProvider, ManualClock


def clients(name: str, options: tether.abc.ClientOptions) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=options.base_url,
        headers=dict(options.headers),
        timeout=options.timeout,
        limits=httpx.Limits(max_connections=20),
        transport=httpx.AsyncHTTPTransport(retries=0),  # httpx's own, always
    )


async def main() -> None:
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    async with tether.SessionManager(
        registry=registry, clock=clock, client_factory=clients
    ) as manager:
        await manager.create("fake")
        assert manager.snapshot().providers["fake"].transport == "custom"


if __name__ == "__main__":
    anyio.run(main)
