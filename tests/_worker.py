"""
A worker process for the durability tests: a SessionManager on a shared store.

Run as ``python tests/_worker.py '<json>'``; prints one JSON line at the end.
Modes:

- ``create``: create ``count`` sandbox sessions (kept on exit), print their ids.
- ``fleet``: create ``count`` sandbox sessions, then watch the shared store for
  ``seconds``, noting when (wall clock) this worker pinged each session; also try one
  Morpheus session on the shared key (one per key across all workers).
- ``churn``: create sandbox sessions in a loop until killed.
- ``watch``: watch the shared store, printing a JSON line per ping
  (``{"ping": id, "at": wall clock}``) until killed.
- ``attach-close``: attach every live session on the store and close it.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

import anyio

import tether
from tether.exceptions import AdmissionError


async def main(args: dict[str, Any]) -> dict[str, Any]:
    mode = args["mode"]
    config = {
        "sandbox": {"base_url": args["sandbox_url"], "api_key": args["sandbox_key"]}
    }
    if "morpheus_url" in args:
        config["morpheus"] = {
            "base_url": args["morpheus_url"],
            "api_key": args["morpheus_key"],
        }
    interval = float(args.get("interval", 30.0))
    manager = tether.SessionManager(
        store=args["store"],
        config=config,
        health=tether.HealthPolicy(
            enabled=mode in {"fleet", "watch"},
            interval=interval,
            jitter=0.0,
            lease_ttl=float(args.get("lease_ttl", 3 * interval)),
        ),
        admission=tether.AdmissionPolicy(mode="reject"),
        retry=tether.RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05),
        on_exit="keep",
        watch=mode in {"fleet", "watch"},
        environ={},
    )
    out: dict[str, Any] = {"worker": args.get("worker")}
    async with manager:
        if mode == "attach-close":
            closed = []
            for record in await manager.list(state=[tether.SessionState.ACTIVE]):
                closed.append((await manager.close(record)).id)
            out["closed"] = closed
            return out
        if mode == "watch":
            async with manager.events() as events:
                print(json.dumps({"ready": True}), flush=True)  # noqa: T201
                async for event in events:
                    if event.kind is tether.EventKind.PINGED and event.session:
                        line = {"ping": event.session.id, "at": time.time()}
                        print(json.dumps(line), flush=True)  # noqa: T201
        if mode == "churn":
            print(json.dumps({"started": True}), flush=True)  # noqa: T201
            while True:
                await manager.create("sandbox", lifetime=600)
        ids = [
            (await manager.create("sandbox", lifetime=600)).id
            for _ in range(int(args.get("count", 1)))
        ]
        out["created"] = ids
        if mode == "fleet":
            pings: defaultdict[str, list[float]] = defaultdict(list)
            async with manager.events() as events:
                if "morpheus_url" in args:
                    try:
                        await manager.create("morpheus", model="llama-3.3-70b")
                        out["morpheus"] = "created"
                    except AdmissionError:
                        out["morpheus"] = "refused"
                with anyio.move_on_after(float(args["seconds"])):
                    async for event in events:
                        if event.kind is tether.EventKind.PINGED and event.session:
                            pings[event.session.id].append(time.time())
            out["pings"] = dict(pings)
    return out


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    result = anyio.run(main, arguments, backend=arguments.get("backend", "asyncio"))
    print(json.dumps(result), flush=True)  # noqa: T201
