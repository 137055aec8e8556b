"""
An emulator in its own process, for the proxy chaos tests.

Run as ``python tests/_emulator_process.py '<json>'`` with ``{"kind": "sandbox",
"key": ...}`` (or ``"relay"``, ``"sipher"``, ``"morpheus"``: the v1.14.0
gateway, with session routes): it serves that emulator with
:func:`tether.testing.serve_asgi` on 127.0.0.1, port 0, prints one JSON line
``{"url": ...}`` on stdout, and serves until its stdin closes (or it is killed).

From a test, :func:`emulator_process` starts one and yields its URL.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio


HERE = Path(__file__)


def build(kind: str, key: str) -> Any:
    """
    The emulator's ASGI app, with the emulator's own fault injection off.
    """
    if kind == "sandbox":
        from tether_sandbox.emulator import SandboxEmulator  # noqa: PLC0415

        return SandboxEmulator(api_keys=(key,)).app
    if kind == "relay":
        from tether_relay.emulator import RelayEmulator  # noqa: PLC0415

        return RelayEmulator(tokens=(key,), ready_delay=0.0).app
    if kind == "sipher":
        from tether_sipher.emulator import SipherEmulator  # noqa: PLC0415

        return SipherEmulator(
            api_keys={key: "pro"}, rate_limit=1_000_000, rate_window=60.0
        ).app
    if kind == "morpheus":
        from tether_morpheus.emulator import MorpheusEmulator  # noqa: PLC0415

        return MorpheusEmulator(api_keys=(key,)).app
    msg = f"unknown emulator {kind!r}"
    raise ValueError(msg)


async def _serve(args: dict[str, Any]) -> None:
    from tether.testing import serve_asgi  # noqa: PLC0415

    app = build(args["kind"], args["key"])
    async with serve_asgi(app, host="127.0.0.1", port=0) as server:
        print(json.dumps({"url": server.url}), flush=True)  # noqa: T201
        # Serve until the parent closes our stdin (or kills us).
        await anyio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


@contextlib.asynccontextmanager
async def emulator_process(kind: str, key: str) -> AsyncIterator[str]:
    """
    Start an emulator process; yield its base URL; stop it on exit.
    """
    args = json.dumps({"kind": kind, "key": key})
    async with await anyio.open_process(
        [sys.executable, str(HERE), args], stderr=None
    ) as process:
        assert process.stdout is not None
        assert process.stdin is not None
        try:
            with anyio.fail_after(60):
                buffer = b""
                while b"\n" not in buffer:
                    buffer += await process.stdout.receive()
            yield json.loads(buffer.split(b"\n", 1)[0])["url"]
        finally:
            with anyio.CancelScope(shield=True):
                await process.stdin.aclose()
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


if __name__ == "__main__":
    anyio.run(_serve, json.loads(sys.argv[1]))
