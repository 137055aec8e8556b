"""
Testing your code: faults on a schedule, so a short test is sure to see them.
"""

import anyio
import httpx

from tether.testing import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    Fault,
    FaultInjector,
    serve_asgi,
)


async def hello(scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def main() -> None:
    # A rate is a probability: seed 0 at 0.3 fails neither of two requests.
    by_chance = FaultInjector(hello, rate=0.3, seed=0, kinds={Fault.SERVER_ERROR})
    # A schedule is not: every second request fails, whatever the seed.
    on_schedule = FaultInjector(hello, every=2, kinds={Fault.SERVER_ERROR})
    for faults in (by_chance, on_schedule):
        async with serve_asgi(faults) as server, httpx.AsyncClient() as client:
            for _ in range(2):
                await client.get(server.url)
    assert sum(by_chance.injected.values()) == 0
    assert on_schedule.injected[Fault.SERVER_ERROR] == 1  # the second request


if __name__ == "__main__":
    anyio.run(main)
