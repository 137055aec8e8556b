"""
A manager in its own process: creates a local session, says so on stdout
(one JSON line), then waits to be killed.

``python _worker.py STATE_DIR RUNTIME_DIR LIFETIME``
"""

from __future__ import annotations

import json
import sys

import anyio

import tether


async def main(state_dir: str, runtime_dir: str, lifetime: float) -> None:
    config = {"local": {"state_dir": state_dir, "runtime_dir": runtime_dir}}
    async with tether.SessionManager(config=config, environ={}) as manager:
        session = await manager.create(
            "local", lifetime=lifetime, labels={"job": "worker"}
        )
        line = {
            "tether_id": session.id,
            "remote_id": session.remote_id,
            "pgid": session.data["pgid"],
        }
        print(json.dumps(line), flush=True)  # noqa: T201
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]))
