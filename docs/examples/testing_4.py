"""
Testing your code: emulators: serve_asgi and FaultInjector.
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
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"hello": "world"}'})


async def main() -> None:
    faults = FaultInjector(hello, rate=0.5, seed=7, kinds={Fault.SERVER_ERROR})
    async with serve_asgi(faults) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            statuses = [(await client.get("/")).status_code for _ in range(20)]
    assert set(statuses) == {200, 503}
    assert statuses.count(503) == faults.injected[Fault.SERVER_ERROR]
    assert server.request_count == 20
    assert server.requests[0].path == "/"


if __name__ == "__main__":
    anyio.run(main)
