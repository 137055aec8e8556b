"""
The sandbox emulator under uvicorn, in its own process (its CPU is not ours).

``python -m benchmarks._server PORT`` serves it on 127.0.0.1:PORT. Besides the
emulator's routes, ``GET /_bench/stats`` answers the requests counted per
route and per session (for the distributed benchmark's duplicate pings),
``POST /_bench/reset`` clears the counts, and ``POST /_bench/mark`` starts a
clock: from then on, the stats answer each session's first ping after the mark,
in seconds (``after``; for takeover times).
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from benchmarks._common import free_port, wait_port


KEY = "instavm_sk_bench_0123456789abcdef"


def make_app(startup_latency: float = 0.0) -> Any:
    from tether_sandbox.emulator import SandboxEmulator  # noqa: PLC0415

    emulator = SandboxEmulator(api_keys=(KEY,), startup_latency=startup_latency)
    inner = emulator.app
    by_route: collections.Counter[str] = collections.Counter()
    pings: collections.Counter[str] = collections.Counter()
    after: dict[str, float] = {}
    mark: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        path = scope["path"]
        if path.startswith("/_bench/"):
            if path == "/_bench/reset":
                by_route.clear()
                pings.clear()
            elif path == "/_bench/mark":
                mark[:] = [time.monotonic()]
                after.clear()
            body = json.dumps(
                {"routes": dict(by_route), "pings": dict(pings), "after": after}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if path.startswith("/v1/sessions/status/"):
            by_route["status"] += 1
            sid = path.rsplit("/", 1)[1]
            pings[sid] += 1
            if mark and sid not in after:
                after[sid] = time.monotonic() - mark[0]
        else:
            by_route[path] += 1
        await inner(scope, receive, send)

    return app


@contextlib.contextmanager
def serve_emulator(startup_latency: float = 0.0) -> Iterator[str]:
    """
    Run the emulator in a uvicorn subprocess; yield its base URL.

    Args:
        startup_latency: Seconds each create takes to answer (see
            ``SandboxEmulator``).
    """
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "benchmarks._server", str(port), str(startup_latency)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    import uvicorn  # noqa: PLC0415

    port = int(sys.argv[1])
    startup_latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    uvicorn.run(
        make_app(startup_latency),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
