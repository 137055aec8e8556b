"""
The shared stores across real processes: admission, leases, takeover, fencing.

Each worker is a separate Python process running a small script under
:func:`anyio.run`; it reports what it did as JSON lines on stdout. The Redis
workers run on the test's own backend: under trio, ``RedisStore`` uses
redis-py's sync client in worker threads.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import tether
from tether.exceptions import LeaseLostError
from tether.stores import RedisStore, SqliteStore


@attrs.define
class Board:
    """
    Wakes whoever waits for the workers' output to meet a condition.
    """

    _changed: anyio.Event = attrs.Factory(anyio.Event)

    def notify(self) -> None:
        """
        Wake every waiter to check its condition again.
        """
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """
        Return once *predicate* holds (the caller sets the deadline).
        """
        while not predicate():
            await self._changed.wait()


@attrs.define
class Worker:
    """
    One child process and the JSON lines it has printed so far.
    """

    name: str
    process: anyio.abc.Process
    board: Board
    lines: list[dict[str, Any]] = attrs.Factory(list)
    ready: anyio.Event = attrs.Factory(anyio.Event)
    done: anyio.Event = attrs.Factory(anyio.Event)

    async def read(self) -> None:
        """
        Collect the worker's JSON lines until its stdout closes.
        """
        assert self.process.stdout is not None
        stream = BufferedByteReceiveStream(self.process.stdout)
        try:
            while True:
                line = json.loads(await stream.receive_until(b"\n", 1 << 20))
                if line.get("ready"):
                    self.ready.set()
                else:
                    self.lines.append(line)
                    self.board.notify()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            pass
        finally:
            self.done.set()

    async def stderr(self) -> str:
        """
        What the worker wrote to stderr, for a failing assertion's message.
        """
        assert self.process.stderr is not None
        chunks = []
        with anyio.move_on_after(2):
            async for chunk in self.process.stderr:
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")


@asynccontextmanager
async def workers(
    script: str, argvs: Sequence[Sequence[str]]
) -> AsyncIterator[list[Worker]]:
    """
    Start one child per argv, read their output, and kill any still running at the end.
    """
    started: list[Worker] = []
    board = Board()
    try:
        async with anyio.create_task_group() as tg:
            for argv in argvs:
                process = await anyio.open_process(
                    [sys.executable, "-c", script, *argv],
                    stdin=None,
                )
                worker = Worker(name=argv[0], process=process, board=board)
                started.append(worker)
                tg.start_soon(worker.read)
            with anyio.fail_after(30):
                for worker in started:
                    await worker.ready.wait()
            yield started
            tg.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(10, shield=True):
            for worker in started:
                if worker.process.returncode is None:
                    worker.process.kill()
                await worker.process.aclose()


async def finish(worker: Worker) -> None:
    """
    Wait for a worker to exit on its own, and show its stderr if it failed.
    """
    with anyio.fail_after(30):
        await worker.done.wait()
        code = await worker.process.wait()
    assert 0 == code, await worker.stderr()


# -- SQLite: admission across processes ----------------------------------------

SQLITE_INSERTER = """
import json, os, sys
import anyio, tether
from tether.exceptions import AdmissionError
from tether.stores import SqliteStore

name, path, backend, go, count, limit = sys.argv[1:]

async def main():
    store = SqliteStore(path)
    await store.list()  # open, and create or check the schema
    print(json.dumps({"ready": True}), flush=True)
    while not os.path.exists(go):
        await anyio.sleep(0.002)
    admitted, refused = [], 0

    async def insert(i):
        nonlocal refused
        session = tether.Session(
            id=f"{name}-{i}", provider="fake", state="active", credential="c"
        )
        try:
            await store.insert(session, credential_limit=int(limit))
        except AdmissionError:
            refused += 1
        else:
            admitted.append(session.id)

    async with anyio.create_task_group() as tg:
        for i in range(int(count)):
            tg.start_soon(insert, i)
    await store.aclose()
    print(json.dumps({"admitted": admitted, "refused": refused}), flush=True)

anyio.run(main, backend=backend)
"""


async def test_sqlite_admission_limit_holds_across_processes(tmp_path: Path) -> None:
    """
    Two processes (one on asyncio, one on trio) insert 40 sessions each on one
    credential at once, with a limit of 10: exactly 10 are admitted in all.
    """
    path, go = tmp_path / "t.db", tmp_path / "go"
    argvs = [
        ["p1", str(path), "asyncio", str(go), "40", "10"],
        ["p2", str(path), "trio", str(go), "40", "10"],
    ]

    async with workers(SQLITE_INSERTER, argvs) as procs:
        go.touch()
        for worker in procs:
            await finish(worker)

    results = [w.lines[-1] for w in procs]
    admitted = [sid for r in results for sid in r["admitted"]]
    async with SqliteStore(path) as store:
        stored = await store.list(states=[tether.SessionState.ACTIVE])
    assert 10 == len(admitted)
    assert 70 == sum(r["refused"] for r in results)
    assert sorted(admitted) == sorted(s.id for s in stored)


SQLITE_CRASHER = """
import json, sys
import anyio, tether
from tether.stores import SqliteStore

name, path = sys.argv[1:]

async def main():
    store = SqliteStore(path)
    await store.list()
    print(json.dumps({"ready": True}), flush=True)
    i = 0
    while True:
        session = tether.Session(id=f"s{i}", provider="fake", state="active")
        stored = await store.insert(session)
        stored = await store.update(stored.transition(tether.SessionState.DEGRADED))
        print(json.dumps({"committed": stored.id, "v": stored.version}), flush=True)
        i += 1

anyio.run(main)
"""


async def test_sqlite_keeps_every_committed_write_through_sigkill(
    tmp_path: Path,
) -> None:
    """
    A writer killed with SIGKILL mid-stream loses nothing it saw committed, and
    the file it leaves is consistent and usable.
    """
    path = tmp_path / "t.db"

    async with workers(SQLITE_CRASHER, [["crasher", str(path)]]) as (worker,):
        with anyio.fail_after(30):
            await worker.board.wait_until(lambda: len(worker.lines) >= 50)
        worker.process.send_signal(signal.SIGKILL)
        await worker.process.wait()
        await worker.done.wait()

    committed = {line["committed"] for line in worker.lines}
    with sqlite3.connect(path) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    async with SqliteStore(path) as store:
        stored = {s.id: s for s in await store.list()}
        # Still writable after the crash.
        await store.insert(tether.Session(id="after", provider="fake", state="active"))
    assert "ok" == integrity
    assert committed <= set(stored)
    assert all(
        (tether.SessionState.DEGRADED, 2) == (stored[s].state, stored[s].version)
        for s in committed
    )


# -- Redis: leases across processes --------------------------------------------

REDIS_CLAIMER = """
import json, os, random, sys, time
import anyio, attrs
from tether.exceptions import StaleRecordError
from tether.stores import RedisStore

name, url, namespace, count, ttl, go, stop, backend = sys.argv[1:]

def report(**line):
    print(json.dumps(line), flush=True)

async def main():
    store = RedisStore(url, namespace=namespace)
    await store.get("warm-up")
    report(ready=True)
    while not os.path.exists(go):
        await anyio.sleep(0.002)
    ids = [f"s{i}" for i in range(int(count))]
    held = {}  # session id -> (token, when its last successful claim was sent)
    while not os.path.exists(stop):
        random.shuffle(ids)
        for sid in ids:
            sent = time.time()
            token = await store.claim(sid, name, float(ttl))
            claimed = time.time()
            old = held.pop(sid, None)
            if old is not None and old[0] != token:
                # The lease lapsed and changed hands since the last claim.
                report(lost=sid, t=old[0], o=name, r=old[1])
            if token is None:
                continue
            held[sid] = (token, sent)
            if old is not None and old[0] == token:
                continue
            # A new lease: record who holds it, fenced by its token.
            record = await store.get(sid)
            try:
                await store.update(
                    attrs.evolve(record, data={"owner": name, "token": token}),
                    fence=token,
                )
                wrote = "ok"
            except StaleRecordError as exc:  # LeaseLostError included
                wrote = type(exc).__name__
            report(s=sid, t=token, o=name, w=wrote, c=claimed)
    await store.aclose()

anyio.run(main, backend=backend)
"""


async def test_redis_leases_one_owner_takeover_and_fencing(
    redis_url: str, tmp_path: Path, anyio_backend: str
) -> None:
    """
    Four processes claim the leases of 200 sessions over and over; one is
    killed with SIGKILL. Whatever the load, these hold:

    * each lease (session, token) is acquired by one owner, once;
    * a lease changes hands only after it lapsed: the new owner's claim came
      at least one TTL after the old owner's last renewal was sent;
    * every fenced write is either the newest holder's, and lands, or an old
      holder's, refused with LeaseLostError; the records end as the newest
      holders wrote them, and the killed worker's fenced write is refused;
    * the killed worker's leases pass to the survivors.

    A session can be acquired more than once even while every worker lives:
    a worker renews its leases one round at a time (a claim per session, a
    get and an update per new lease), and when a round takes longer than the
    TTL on a loaded machine, the leases it has not reached yet lapse and
    another worker takes them, with a larger token. Every acquisition beyond
    the first of a session is such a handover. How long things take is only
    bounded by generous deadlines (liveness), never asserted.

    The workers run on the test's backend: under trio, each through
    redis-py's sync client in worker threads.
    """
    import redis  # noqa: PLC0415

    namespace, count, ttl = f"t{uuid.uuid4().hex}", 200, 2.0
    go, stop = tmp_path / "go", tmp_path / "stop"
    async with RedisStore(redis_url, namespace=namespace) as store:
        for i in range(count):
            await store.insert(
                tether.Session(id=f"s{i}", provider="fake", state="active")
            )
    argvs = [
        [
            *(f"w{n}", redis_url, namespace, str(count), str(ttl)),
            *(str(go), str(stop), anyio_backend),
        ]
        for n in range(4)
    ]

    def acquisitions() -> list[dict[str, Any]]:
        return [e for w in procs for e in w.lines if "s" in e]

    def holders() -> dict[str, dict[str, Any]]:
        # Each session's newest known lease.
        newest: dict[str, dict[str, Any]] = {}
        for e in acquisitions():
            if e["s"] not in newest or e["t"] > newest[e["s"]]["t"]:
                newest[e["s"]] = e
        return newest

    async with workers(REDIS_CLAIMER, argvs) as procs:
        board = procs[0].board
        go.touch()
        with anyio.fail_after(120):
            await board.wait_until(lambda: count == len(holders()))
        held = defaultdict(set)
        for sid, e in holders().items():
            held[e["o"]].add(sid)
        victim = max(procs, key=lambda w: len(held[w.name]))
        victim.process.send_signal(signal.SIGKILL)
        await victim.process.wait()
        with anyio.fail_after(30):
            await victim.done.wait()  # every line it printed has been read
        victim_tokens = {
            sid: e["t"] for sid, e in holders().items() if e["o"] == victim.name
        }

        def taken_over() -> bool:
            newest = holders()
            return all(newest[sid]["t"] > t for sid, t in victim_tokens.items())

        with anyio.fail_after(120):
            await board.wait_until(taken_over)
        stop.touch()
        survivors = [w for w in procs if w is not victim]
        for worker in survivors:
            await finish(worker)

    events = acquisitions()
    losses = [e for w in procs for e in w.lines if "lost" in e]
    client = redis.Redis.from_url(redis_url)
    try:
        raw = await anyio.to_thread.run_sync(
            client.mget, [f"{namespace}:token:s{i}" for i in range(count)]
        )
    finally:
        client.close()
    tokens = {f"s{i}": int(value or 0) for i, value in enumerate(raw)}

    # One owner per lease, and each lease acquired once.
    by_lease = defaultdict(list)
    for e in events:
        by_lease[e["s"], e["t"]].append(e["o"])
    assert all(1 == len(o) for o in by_lease.values())
    assert count == len({e["s"] for e in events})
    # Leases changed hands only after they lapsed (5 ms for Redis's rounding).
    for loss in losses:
        later = [
            e["c"] for e in events if e["s"] == loss["lost"] and e["t"] > loss["t"]
        ]
        assert tokens[loss["lost"]] > loss["t"], loss
        if later:  # else the newer lease is one the killed worker never reported
            assert min(later) - loss["r"] >= ttl - 0.005, loss
    # The victim's leases went to survivors.
    assert len(victim_tokens) > 0
    finals = holders()
    assert victim.name not in {finals[sid]["o"] for sid in victim_tokens}
    # Every write landed or was fenced off by a newer token.
    assert {"ok", "LeaseLostError"} >= {e["w"] for e in events}
    assert all(tokens[e["s"]] > e["t"] for e in events if e["w"] != "ok")
    # The survivors reported every lease they took before they exited; only
    # the killed worker can have taken a newer one it never reported.
    unreported = {sid for sid, e in finals.items() if tokens[sid] != e["t"]}
    assert all(tokens[sid] > finals[sid]["t"] for sid in unreported)

    async with RedisStore(redis_url, namespace=namespace) as store:
        records = {s.id: s for s in await store.list()}
        orphan = min(victim_tokens)
        # The killed worker's write, fenced by its old token, is refused.
        with pytest.raises(LeaseLostError) as info:
            await store.update(
                attrs.evolve(records[orphan], data={"owner": victim.name}),
                fence=victim_tokens[orphan],
            )
        unchanged = await store.get(orphan)
    assert (victim_tokens[orphan], tokens[orphan]) == (
        info.value.expected,
        info.value.actual,
    )
    assert unchanged == records[orphan]
    # Each record is as its newest lease holder wrote it.
    for sid, record in records.items():
        written = [{"owner": finals[sid]["o"], "token": finals[sid]["t"]}]
        if sid in unreported:
            written.append({"owner": victim.name, "token": tokens[sid]})
        assert dict(record.data) in written, sid
