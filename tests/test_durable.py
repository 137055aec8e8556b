"""
Durable and distributed state through the manager: restarts, several processes,
a fleet of workers on Redis, and crashes.

Worker processes (tests/_worker.py) talk to emulators served by the test over
real sockets, and share a SQLite file or a Redis server with it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import tether
from tether.testing import FakeBackend, FakeProvider, Fault, ManualClock, serve_asgi
from tether_morpheus.emulator import MorpheusEmulator
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


S = tether.SessionState
WORKER = str(Path(__file__).parent / "_worker.py")
SANDBOX_KEY = "instavm_sk_durable_0123456789"
MORPHEUS_KEY = "sk-DuRa01.0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"


def fresh(redis_url: str) -> str:
    """
    The test's own key namespace on the shared Redis server.
    """
    return f"{redis_url}?namespace=t{os.urandom(4).hex()}"


async def run_worker(args: dict[str, Any]) -> dict[str, Any]:
    result = await anyio.run_process(
        [sys.executable, WORKER, json.dumps(args)], check=False
    )
    assert 0 == result.returncode, result.stderr.decode()[-3000:]
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def sandbox_registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    return registry


async def test_restart_on_the_same_sqlite_file_and_attach(tmp_path):
    """
    A manager restarted on the same SQLite file sees every session it had, and
    attach() takes one over (pings, then closes it on exit).
    """
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    url = f"sqlite:///{tmp_path / 'sessions.db'}"

    def manager(**kw: Any) -> tether.SessionManager:
        return tether.SessionManager(
            registry=registry,
            config={"fake": {"backend": backend}},
            store=url,
            clock=clock,
            environ={},
            **kw,
        )

    async with manager(on_exit="keep") as first:
        kept = [await first.create("fake", labels={"n": str(i)}) for i in range(3)]

    async with manager() as second:
        seen = await second.list()
        attached = await second.attach(kept[0].id)
        health = await second.ping(attached)

    assert {s.id for s in kept} == {s.id for s in seen}
    assert tether.HealthStatus.ALIVE == health.status
    assert {kept[1].remote_id, kept[2].remote_id} == backend.live_ids()


async def test_two_processes_share_one_sqlite_file(tmp_path):
    """
    Sessions created by one process are attached and closed by another, through
    one SQLite file, against one emulator.
    """
    emulator = SandboxEmulator(api_keys=(SANDBOX_KEY,))
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    async with serve_asgi(emulator.app) as server:
        base = {"store": store, "sandbox_url": server.url, "sandbox_key": SANDBOX_KEY}
        async with anyio.create_task_group() as tg:
            results: list[dict[str, Any]] = []

            async def create(worker: int) -> None:
                results.append(
                    await run_worker(
                        {**base, "mode": "create", "count": 3, "worker": worker}
                    )
                )

            for worker in range(2):
                tg.start_soon(create, worker)
        created = {sid for r in results for sid in r["created"]}
        assert 6 == len(created)
        assert 6 == len(emulator.live_sessions())

        closed = await run_worker({**base, "mode": "attach-close", "backend": "trio"})

    assert created == set(closed["closed"])
    assert set() == emulator.live_sessions()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_fleet_of_four_workers_on_redis(redis_url, anyio_backend):
    """
    Four worker processes on one Redis hold 200 sessions: each session is
    pinged by one worker at a time (ownership moves only with the shards as
    workers join and leave), about once per interval, and the one Morpheus
    session per key is admitted once across the fleet. (asyncio only: redis-py
    runs on asyncio.)
    """
    sandbox = SandboxEmulator(api_keys=(SANDBOX_KEY,))
    morpheus = MorpheusEmulator(api_keys=[MORPHEUS_KEY])
    seconds, interval = 4.0, 1.0
    redis_url = fresh(redis_url)
    async with (
        serve_asgi(sandbox.app) as s_server,
        serve_asgi(morpheus.app) as m_server,
    ):
        base = {
            "store": redis_url,
            "sandbox_url": s_server.url,
            "sandbox_key": SANDBOX_KEY,
            "morpheus_url": m_server.url,
            "morpheus_key": MORPHEUS_KEY,
            "mode": "fleet",
            "count": 50,
            "seconds": seconds,
            "interval": interval,
            "lease_ttl": 3 * interval,
        }
        results: list[dict[str, Any]] = []

        async def work(worker: int) -> None:
            results.append(await run_worker({**base, "worker": worker}))

        async with anyio.create_task_group() as tg:
            for worker in range(4):
                tg.start_soon(work, worker)
        modelsessions = [
            r for r in morpheus.requests_log if r[1] == "/api/v1/session/modelsession"
        ]
        # Clean up what the fleet kept.
        async with tether.SessionManager(
            store=redis_url,
            config={
                "sandbox": {"base_url": s_server.url, "api_key": SANDBOX_KEY},
                "morpheus": {"base_url": m_server.url, "api_key": MORPHEUS_KEY},
            },
            health_checks=False,
            environ={},
        ) as manager:
            for record in await manager.list(state=[S.ACTIVE, S.DEGRADED]):
                await manager.close(record)

    timeline: dict[str, list[tuple[float, int]]] = {}
    for r in results:
        for sid, times in r["pings"].items():
            timeline.setdefault(sid, []).extend((t, r["worker"]) for t in times)
    created = {sid for r in results for sid in r["created"]}
    assert 200 == len(created)
    assert created <= set(timeline), "some sessions were never pinged"
    for sid, pings in timeline.items():
        pings.sort()
        # One pinger at a time: the pinger changes only when the session's
        # shard changes hands (a worker joins or leaves: 8 at most), never
        # back and forth as two pingers at once would.
        handoffs = sum(1 for a, b in itertools.pairwise(pings) if a[1] != b[1])
        assert handoffs <= 8, (sid, pings)
        # About one ping per interval from each pinger.
        by_worker: dict[int, list[float]] = {}
        for t, w in pings:
            by_worker.setdefault(w, []).append(t)
        assert max(len(ts) for ts in by_worker.values()) <= seconds / interval + 1
    assert ["created"] == [r["morpheus"] for r in results if r["morpheus"] == "created"]
    assert 1 == len(modelsessions)
    assert set() == sandbox.live_sessions()


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
async def test_sigkill_mid_create_then_reconcile_leaves_no_orphan(
    tmp_path, request, store_kind, anyio_backend
):
    """
    A worker killed with SIGKILL in the middle of creates leaves intents and
    orphans; a restarted manager's reconcile leaves none on the emulator.
    """
    if store_kind == "redis":
        store = fresh(request.getfixturevalue("redis_url"))
    else:
        store = f"sqlite:///{tmp_path / 'crash.db'}"
    emulator = SandboxEmulator(api_keys=(SANDBOX_KEY,))
    emulator.faults.rate = 1.0
    emulator.faults.kinds = [Fault.LATENCY]
    emulator.faults.latency = 0.05
    async with serve_asgi(emulator.app) as server:
        args = {
            "store": store,
            "sandbox_url": server.url,
            "sandbox_key": SANDBOX_KEY,
            "mode": "churn",
        }
        async with await anyio.open_process(
            [sys.executable, WORKER, json.dumps(args)]
        ) as process:
            assert process.stdout is not None
            await process.stdout.receive()  # started
            with anyio.fail_after(30):
                while len(emulator.live_sessions()) < 3:  # noqa: ASYNC110 -- polls another process's effect
                    await anyio.sleep(0.02)
            # Kill it while a create is in flight on the emulator.
            await anyio.sleep(0.025)
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        emulator.faults.rate = 0.0

        async with tether.SessionManager(
            registry=sandbox_registry(),
            store=store,
            config={"sandbox": {"base_url": server.url, "api_key": SANDBOX_KEY}},
            health_checks=False,
            environ={},
        ) as manager:
            report = await manager.reconcile(grace=0)
            for record in await manager.list(state=[S.ACTIVE, S.DEGRADED]):
                await manager.close(record)
            leftovers = await manager.list(state=[S.CREATING, S.CLOSING])

    assert set() == emulator.live_sessions()
    assert [] == leftovers
    assert report.actions, (
        "the crash left nothing to reconcile: the test tested nothing"
    )


async def test_takeover_after_a_worker_stops(tmp_path):
    """
    A session watched by a worker that stopped (keeping its sessions) is taken
    over by another watching worker once the lease lapses, and pinged by it.
    """
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    store = tether.MemoryStore(clock=clock.time)

    def manager(**kw: Any) -> tether.SessionManager:
        return tether.SessionManager(
            registry=registry,
            config={"fake": {"backend": backend}},
            store=store,
            clock=clock,
            health=tether.HealthPolicy(interval=10, jitter=0, lease_ttl=30),
            environ={},
            **kw,
        )

    async with manager(on_exit="keep") as first:
        s = await first.create("fake")
        await clock.advance(10)  # first pings, and holds the lease
    pings_by_first = backend.calls["ping"]

    async with manager(watch=True) as second:
        await clock.advance(10)
        assert pings_by_first == backend.calls["ping"], "took over a live lease"
        await clock.advance(40)
        taken = [x.id for x in second.snapshot().sessions]

    assert [s.id] == taken
    assert backend.calls["ping"] > pings_by_first


async def test_sigkill_a_watch_worker_its_shards_are_taken_over(
    redis_url, anyio_backend
):
    """
    Two watch worker processes share 30 sessions by shard; one is killed with
    SIGKILL. The survivor pings the dead worker's sessions within the TTL
    plus one interval (generous margin), and never pinged one of them while
    the dead worker still did.
    """
    sandbox = SandboxEmulator(api_keys=(SANDBOX_KEY,))
    interval, ttl = 0.5, 2.0
    redis_url = fresh(redis_url)
    async with serve_asgi(sandbox.app) as server:
        config = {"sandbox": {"base_url": server.url, "api_key": SANDBOX_KEY}}
        async with tether.SessionManager(
            registry=sandbox_registry(),
            store=redis_url,
            config=config,
            health_checks=False,
            environ={},
            on_exit="keep",
        ) as maker:
            sessions = {(await maker.create("sandbox")).id for _ in range(30)}
        args = json.dumps(
            {
                "mode": "watch",
                "store": redis_url,
                "sandbox_url": server.url,
                "sandbox_key": SANDBOX_KEY,
                "interval": interval,
                "lease_ttl": ttl,
            }
        )
        pings: dict[str, list[tuple[float, int]]] = {}
        ready = [anyio.Event(), anyio.Event()]
        news = [anyio.Event()]

        async def read(worker: int, process: Any) -> None:
            buffered = BufferedByteReceiveStream(process.stdout)
            try:
                while True:
                    line = json.loads(await buffered.receive_until(b"\n", 1 << 16))
                    if line.get("ready"):
                        ready[worker].set()
                    else:
                        pings.setdefault(line["ping"], []).append((line["at"], worker))
                        news[0].set()
                        news[0] = anyio.Event()
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return

        async def until(predicate) -> None:
            while not predicate():
                await news[0].wait()

        def pinged_by(worker: int, since: float) -> set[str]:
            return {
                sid
                for sid, seen in pings.items()
                if any(w == worker and at > since for at, w in seen)
            }

        async with anyio.create_task_group() as tg:
            procs = [
                await anyio.open_process(
                    [sys.executable, WORKER, args], stdin=None, stderr=None
                )
                for _ in range(2)
            ]
            for worker, process in enumerate(procs):
                tg.start_soon(read, worker, process)
            try:
                with anyio.fail_after(60):
                    for event in ready:
                        await event.wait()
                    # Settled: every session pinged since both were up and
                    # sharing (each pinged some).
                    settled = time.time() + ttl / 2
                    await until(
                        lambda: (
                            pinged_by(0, settled) | pinged_by(1, settled) >= sessions
                            and pinged_by(0, settled)
                            and pinged_by(1, settled)
                        )
                    )
                victim = pinged_by(0, settled) - pinged_by(1, settled)
                procs[0].send_signal(signal.SIGKILL)
                killed = time.time()
                with anyio.fail_after(60):
                    await until(lambda: victim <= pinged_by(1, killed))
            finally:
                for process in procs:
                    if process.returncode is None:
                        process.kill()
                    await process.wait()
        async with tether.SessionManager(
            registry=sandbox_registry(),
            store=redis_url,
            config=config,
            health_checks=False,
            environ={},
        ) as manager:
            for record in await manager.list(state=[S.ACTIVE, S.DEGRADED]):
                await manager.close(record)

    assert victim
    for sid in victim:
        by_victim = [at for at, w in pings[sid] if w == 0 and at > settled]
        survivor = [at for at, w in pings[sid] if w == 1]
        assert not [at for at in survivor if min(by_victim) < at < max(by_victim)]
        taken = min(at for at in survivor if at > killed) - killed
        assert taken <= ttl + interval + 10, (sid, taken)
    assert set() == sandbox.live_sessions()


async def test_redis_down_every_manager_call_is_store_unavailable(own_redis):
    """
    Once the manager's Redis has stopped, create, ping, get, list and close
    each raise StoreUnavailableError (redis-py's ConnectionError chained),
    never a raw redis-py error, on both backends (the sync client in worker
    threads under trio); the refused create made nothing on the service, and
    the manager still exits.
    """
    redis_exceptions = pytest.importorskip("redis.exceptions")
    backend = FakeBackend()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        store=fresh(own_redis.url),
        health_checks=False,
        environ={},
    ) as manager:
        session = await manager.create("fake")
        own_redis.stop()
        calls = {
            "create": lambda: manager.create("fake"),
            "ping": lambda: manager.ping(session),
            "get": lambda: manager.get(session.id),
            "list": manager.list,
            "close": lambda: manager.close(session),
        }
        raised: dict[str, BaseException | None] = {}
        for name, call in calls.items():
            try:
                await call()
            except Exception as exc:
                raised[name] = exc
            else:
                raised[name] = None

    for name, exc in raised.items():
        assert isinstance(exc, tether.exceptions.StoreUnavailableError), (name, exc)
        assert isinstance(exc.__cause__, redis_exceptions.ConnectionError), name
    assert {session.remote_id} == backend.live_ids()


async def test_500_concurrent_creates_on_a_redis_store_url(redis_url):
    """
    500 concurrent creates on ``store="redis://..."`` all succeed (none fails
    with redis-py's MaxConnectionsError), every one is live on the service
    and recorded, and the manager's store never holds more connections than
    its pool allows (50): the excess calls wait for a free one.
    """
    from tether.stores._redis import MAX_CONNECTIONS  # noqa: PLC0415

    redis = pytest.importorskip("redis")
    monitor = redis.Redis.from_url(redis_url)

    async def connected() -> int:
        info = await anyio.to_thread.run_sync(monitor.info, "clients")
        return int(info["connected_clients"])

    backend = FakeBackend()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    created: list[tether.Session] = []
    try:
        baseline = peak = await connected()
        async with tether.SessionManager(
            registry=registry,
            config={"fake": {"backend": backend}},
            store=fresh(redis_url),
            health_checks=False,
            environ={},
        ) as manager:
            done = anyio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, await connected())
                    await anyio.sleep(0.005)

            async def create() -> None:
                created.append(await manager.create("fake"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(sample)
                async with anyio.create_task_group() as creates:
                    for _ in range(500):
                        creates.start_soon(create)
                done.set()
            records = await manager.list(state=[S.ACTIVE])
            live = backend.live_ids()
    finally:
        await anyio.to_thread.run_sync(monitor.close)

    assert 500 == len(created)
    assert {s.remote_id for s in created} == live
    assert {s.id for s in created} == {r.id for r in records}
    assert peak - baseline <= MAX_CONNECTIONS
