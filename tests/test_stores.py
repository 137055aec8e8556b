"""
The store contract, run against every store; then what each durable store adds.

The contract tests run on every store under asyncio and trio: under trio,
``RedisStore`` uses redis-py's sync client in worker threads. Tests that talk to
Redis through redis-py's async client themselves run on asyncio only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import stat
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import tether
from tether._store import LiveCounter
from tether.abc import Store
from tether.exceptions import (
    AdmissionError,
    ConfigError,
    LeaseLostError,
    SessionExistsError,
    SessionNotFoundError,
    StaleRecordError,
    StoreClosedError,
    StoreError,
    StoreUnavailableError,
)
from tether.stores import RedisStore, SqliteStore, open_store
from tether.stores._redis import MAX_CONNECTIONS
from tether.stores._sqlite import SCHEMA_VERSION


S = tether.SessionState

# Which store on which event loop.
COMBOS = [
    pytest.param("memory", "asyncio", id="memory-asyncio"),
    pytest.param("memory", "trio", id="memory-trio"),
    pytest.param("sqlite", "asyncio", id="sqlite-asyncio"),
    pytest.param("sqlite", "trio", id="sqlite-trio"),
    pytest.param("redis", "asyncio", id="redis-asyncio"),
    pytest.param("redis", "trio", id="redis-trio"),
]


class FakeTime:
    """
    A wall clock for lease deadlines that moves only when told.
    """

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Harness:
    """
    One store under test, and a way to let its leases lapse.
    """

    kind: str
    store: Store
    time: FakeTime | None

    async def lapse(self, seconds: float) -> None:
        """
        Let *seconds* pass for the store's leases.
        """
        if self.time is None:
            # Redis expires leases by its own clock: wait for real.
            await anyio.sleep(seconds)
        else:
            self.time.now += seconds


@pytest.fixture(name="harness")
async def _harness(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Harness]:
    """
    A fresh, empty store of the kind the test is parametrized with.
    """
    time = FakeTime()
    store: Store
    if kind == "memory":
        store = tether.MemoryStore(clock=time)
    elif kind == "sqlite":
        store = SqliteStore(tmp_path / "tether.db", clock=time)
    else:
        url = request.getfixturevalue("redis_url")
        # A namespace per test keeps tests apart in one server.
        store = RedisStore(url, namespace=f"t{uuid.uuid4().hex}")
        time = None
    try:
        yield Harness(kind=kind, store=store, time=time)
    finally:
        await store.aclose()


def make(
    sid: str = "s1",
    *,
    provider: str = "fake",
    state: tether.SessionState = S.ACTIVE,
    credential: str | None = "fake:cred",
    **kw: object,
) -> tether.Session:
    """
    A session record with test defaults (one provider, one credential).
    """
    return tether.Session(
        id=sid,
        provider=provider,
        state=state,
        credential=credential,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("kind", "anyio_backend"), COMBOS)
class TestContract:
    """
    What every store does, as MemoryStore defines it.
    """

    async def test_insert_get_round_trip(self, harness: Harness) -> None:
        """
        A record comes back equal to what was inserted, field by field, at version 1.
        """
        now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
        session = make(
            remote_id="r-1",
            raw_state="running",
            created_at=now,
            updated_at=now + timedelta(seconds=1),
            expires_at=now + timedelta(hours=1),
            labels={"team": "a", "ünïcode": "✓"},
            params={"size": 4, "nested": {"a": [1, 2.5, None, True]}},
            data={"host": "10.0.0.1"},
            lifetime=3600.0,
            keepalive=True,
            error=None,
        )

        stored = await harness.store.insert(session)
        got = await harness.store.get("s1")

        assert 1 == stored.version
        assert got is not None
        assert stored.to_dict() == got.to_dict()
        assert attrs.evolve(session, version=1).to_dict() == got.to_dict()

    async def test_get_missing(self, harness: Harness) -> None:
        """
        An unknown id is None, not an error.
        """
        assert None is await harness.store.get("nope")

    async def test_insert_duplicate_refused(self, harness: Harness) -> None:
        """
        An id can be inserted once; the first record stays. The refusal is a
        SessionExistsError, a ValueError too (misuse).
        """
        await harness.store.insert(make(remote_id="first"))

        with pytest.raises(SessionExistsError, match="exists already") as info:
            await harness.store.insert(make(remote_id="second"))

        assert isinstance(info.value, ValueError)
        assert ("insert", "s1") == (info.value.operation, info.value.session_id)

        got = await harness.store.get("s1")
        assert got is not None
        assert "first" == got.remote_id

    async def test_list_filters(self, harness: Harness) -> None:
        """
        list() applies every filter given, and keeps insertion order.
        """
        store = harness.store
        await store.insert(make("a", provider="p1", labels={"env": "dev"}))
        await store.insert(make("b", provider="p2", labels={"env": "prod"}))
        await store.insert(
            make("c", provider="p1", state=S.CLOSED, labels={"env": "prod"})
        )
        await store.insert(make("d", provider="p1", state=S.DEGRADED))

        def ids(sessions: list[tether.Session]) -> list[str]:
            return [s.id for s in sessions]

        assert ["a", "b", "c", "d"] == ids(await store.list())
        assert ["a", "c", "d"] == ids(await store.list(provider="p1"))
        assert ["a", "b", "d"] == ids(await store.list(states=[S.ACTIVE, S.DEGRADED]))
        assert ["b", "c"] == ids(await store.list(labels={"env": "prod"}))
        assert ["c"] == ids(
            await store.list(provider="p1", states=[S.CLOSED], labels={"env": "prod"})
        )
        assert [] == ids(await store.list(provider="p3"))
        assert [] == ids(await store.list(states=[]))

    async def test_update_bumps_version(self, harness: Harness) -> None:
        """
        An update at the current version is stored with the version plus one.
        """
        stored = await harness.store.insert(make())

        updated = await harness.store.update(
            attrs.evolve(stored, state=S.DEGRADED, error="slow")
        )
        got = await harness.store.get("s1")

        assert 2 == updated.version
        assert got is not None
        assert updated.to_dict() == got.to_dict()
        assert S.DEGRADED == got.state

    async def test_update_version_conflict(self, harness: Harness) -> None:
        """
        Of two writers that read the same version, the second is refused.
        """
        read = await harness.store.insert(make())
        await harness.store.update(attrs.evolve(read, raw_state="one"))

        with pytest.raises(StaleRecordError) as info:
            await harness.store.update(attrs.evolve(read, raw_state="two"))

        got = await harness.store.get("s1")
        assert (1, 2) == (info.value.expected, info.value.actual)
        assert not isinstance(info.value, LeaseLostError)
        assert got is not None
        assert ("one", 2) == (got.raw_state, got.version)

    async def test_concurrent_updates_one_wins(self, harness: Harness) -> None:
        """
        Twenty writers racing from one read: exactly one write lands.
        """
        read = await harness.store.insert(make())
        results: list[str] = []

        async def write(n: int) -> None:
            try:
                await harness.store.update(attrs.evolve(read, raw_state=str(n)))
            except StaleRecordError:
                results.append("stale")
            else:
                results.append(str(n))

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(write, n)

        winners = [r for r in results if r != "stale"]
        got = await harness.store.get("s1")
        assert 1 == len(winners)
        assert got is not None
        assert (winners[0], 2) == (got.raw_state, got.version)

    async def test_update_missing(self, harness: Harness) -> None:
        """
        Updating a record that does not exist raises SessionNotFoundError.
        """
        with pytest.raises(SessionNotFoundError) as info:
            await harness.store.update(make("ghost", version=1))

        assert "ghost" == info.value.session_id

    async def test_delete(self, harness: Harness) -> None:
        """
        A deleted record is gone from get, list and update; deleting again is a no-op.
        """
        stored = await harness.store.insert(make())
        await harness.store.insert(make("other"))

        await harness.store.delete("s1")
        await harness.store.delete("s1")
        await harness.store.delete("never-was")

        assert None is await harness.store.get("s1")
        assert ["other"] == [s.id for s in await harness.store.list()]
        with pytest.raises(SessionNotFoundError):
            await harness.store.update(stored)

    async def test_admission_limit_holds_under_concurrency(
        self, harness: Harness
    ) -> None:
        """
        100 concurrent inserts on one credential with a limit of 5: exactly 5 land.
        """
        admitted: list[str] = []
        refused: list[AdmissionError] = []

        async def insert(n: int) -> None:
            try:
                await harness.store.insert(make(f"s{n}"), credential_limit=5)
            except AdmissionError as exc:
                refused.append(exc)
            else:
                admitted.append(f"s{n}")

        async with anyio.create_task_group() as tg:
            for n in range(100):
                tg.start_soon(insert, n)

        stored = await harness.store.list()
        assert 5 == len(admitted)
        assert 95 == len(refused)
        assert sorted(admitted) == sorted(s.id for s in stored)
        assert {("fake", "fake:cred", 5)} == {
            (e.provider, e.credential, e.limit) for e in refused
        }

    async def test_admission_counts_live_sessions_of_one_credential(
        self, harness: Harness
    ) -> None:
        """
        Only live sessions of the same provider and credential use up the limit.
        """
        store = harness.store
        first = await store.insert(make("a"), credential_limit=1)
        # Other credentials, other providers and credential-less sessions are
        # not counted against this one, nor limited by it.
        await store.insert(make("b", credential="fake:other"), credential_limit=1)
        await store.insert(make("c", provider="other"), credential_limit=1)
        await store.insert(make("d", credential=None), credential_limit=1)
        await store.insert(make("e", credential=None), credential_limit=1)
        with pytest.raises(AdmissionError):
            await store.insert(make("f"), credential_limit=1)

        # Ending the first session frees its place...
        await store.update(attrs.evolve(first, state=S.CLOSED))
        second = await store.insert(make("g"), credential_limit=1)
        # ...and so does deleting it.
        await store.delete(second.id)
        third = await store.insert(make("h", state=S.CREATING), credential_limit=1)

        assert 1 == third.version
        # Without a limit, nothing is refused.
        await store.insert(make("i"))
        assert {"a", "b", "c", "d", "e", "h", "i"} == {s.id for s in await store.list()}

    async def test_admission_follows_state_back_to_live(self, harness: Harness) -> None:
        """
        A session that becomes live again by an update counts again.
        """
        store = harness.store
        lost = await store.insert(make("a", state=S.LOST), credential_limit=1)
        await store.insert(make("b"), credential_limit=1)
        with pytest.raises(AdmissionError):
            await store.insert(make("c"), credential_limit=1)
        await store.update(attrs.evolve(lost, state=S.CLOSING))
        # CLOSING is not live: b is still the only one. Close b, then c fits.
        b = await store.get("b")
        assert b is not None
        await store.update(attrs.evolve(b, state=S.EXPIRED))

        await store.insert(make("c"), credential_limit=1)

        assert ["c"] == [s.id for s in await store.list(states=[S.ACTIVE])]

    async def test_count_live_counts_what_admission_counts(
        self, harness: Harness
    ) -> None:
        """
        count_live() counts the live (creating, active, degraded) sessions of
        one provider and credential, following updates and deletes: the
        number admission compares with its limit.
        """
        store = harness.store
        assert isinstance(store, LiveCounter)
        first = await store.insert(make("a"))
        await store.insert(make("b", state=S.CREATING))
        await store.insert(make("c", state=S.DEGRADED))
        await store.insert(make("d", state=S.CLOSED))
        await store.insert(make("e", credential="fake:other"))
        await store.insert(make("f", provider="other"))
        await store.insert(make("g", credential=None))
        held = await store.count_live("fake", "fake:cred")
        with pytest.raises(AdmissionError):
            await store.insert(make("x"), credential_limit=held)
        await store.update(attrs.evolve(first, state=S.CLOSED))
        closed = await store.count_live("fake", "fake:cred")
        await store.delete("b")
        deleted = await store.count_live("fake", "fake:cred")
        await store.insert(make("h"), credential_limit=deleted + 1)

        assert (3, 2, 1) == (held, closed, deleted)
        assert 2 == await store.count_live("fake", "fake:cred")
        assert 1 == await store.count_live("fake", "fake:other")
        assert 0 == await store.count_live("nobody", "fake:cred")

    async def test_claim_release_takeover_and_fencing(self, harness: Harness) -> None:
        """
        One owner at a time; a lapsed lease passes on with a larger token, and
        the old holder's fenced writes are refused.
        """
        store = harness.store
        record = await store.insert(make())
        ttl = 0.5

        t1 = await store.claim("s1", "alice", ttl)
        assert t1 is not None
        assert None is await store.claim("s1", "bob", ttl)
        # Renewal keeps the token.
        assert t1 == await store.claim("s1", "alice", ttl)
        # A live holder's fenced write lands.
        record = await store.update(attrs.evolve(record, raw_state="a"), fence=t1)

        await harness.lapse(ttl + 0.3)
        t2 = await store.claim("s1", "bob", ttl)
        assert t2 is not None
        assert t2 > t1
        assert None is await store.claim("s1", "alice", ttl)

        with pytest.raises(LeaseLostError) as info:
            await store.update(attrs.evolve(record, raw_state="stale"), fence=t1)
        assert (t1, t2) == (info.value.expected, info.value.actual)
        record = await store.update(attrs.evolve(record, raw_state="b"), fence=t2)

        # Releasing hands the lease on at once, with a still larger token.
        await store.release("s1", "alice")  # not hers: no effect
        assert None is await store.claim("s1", "alice", ttl)
        await store.release("s1", "bob")
        t3 = await store.claim("s1", "alice", ttl)
        assert t3 is not None
        assert t3 > t2
        with pytest.raises(LeaseLostError):
            await store.update(attrs.evolve(record, raw_state="late"), fence=t2)

        got = await store.get("s1")
        assert got is not None
        assert ("b", 3) == (got.raw_state, got.version)

    async def test_leases_are_per_session(self, harness: Harness) -> None:
        """
        Holding one session's lease says nothing about another's.
        """
        t_a = await harness.store.claim("a", "alice", 5)
        t_b = await harness.store.claim("b", "bob", 5)

        assert t_a is not None
        assert t_b is not None
        assert None is await harness.store.claim("a", "bob", 5)
        assert None is await harness.store.claim("b", "alice", 5)

    async def test_unfenced_update_ignores_leases(self, harness: Harness) -> None:
        """
        A write without a fence is checked by version only, whoever holds the lease.
        """
        record = await harness.store.insert(make())
        await harness.store.claim("s1", "alice", 5)

        updated = await harness.store.update(attrs.evolve(record, raw_state="x"))

        assert 2 == updated.version

    async def test_concurrent_claims_one_owner(self, harness: Harness) -> None:
        """
        Fifty owners claiming one session at once: exactly one gets it.
        """
        tokens: dict[str, int | None] = {}

        async def claim(owner: str) -> None:
            tokens[owner] = await harness.store.claim("s1", owner, 5)

        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(claim, f"w{n}")

        winners = {o: t for o, t in tokens.items() if t is not None}
        assert 1 == len(winners)
        assert 50 == len(tokens)

    async def test_records_hold_no_secrets(self, harness: Harness) -> None:
        """
        What a store keeps is exactly Session.to_dict(), which has no secret field.
        """
        session = make(params={"image": "python"}, data={"host": "h"})

        await harness.store.insert(session)
        got = await harness.store.get("s1")

        assert got is not None
        assert {
            "id",
            "provider",
            "state",
            "remote_id",
            "raw_state",
            "created_at",
            "updated_at",
            "expires_at",
            "labels",
            "params",
            "data",
            "credential",
            "lifetime",
            "keepalive",
            "error",
            "version",
        } == set(got.to_dict())
        assert json.loads(json.dumps(got.to_dict())) == got.to_dict()
        assert tether.Session.from_dict(got.to_dict()) == got


@attrs.define
class ConnectedClients:
    """
    Counts the clients connected to a Redis (INFO clients), on any backend:
    through redis-py's sync client, in a worker thread.
    """

    client: Any

    async def count(self) -> int:
        info = await anyio.to_thread.run_sync(self.client.info, "clients")
        return int(info["connected_clients"])

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.client.close)


def connected_clients(url: str) -> ConnectedClients:
    import redis  # noqa: PLC0415

    return ConnectedClients(redis.Redis.from_url(url))


# -- Backend failures ----------------------------------------------------------

#: Every method of the Store protocol but aclose(), which each test calls itself.
METHODS = ("insert", "update", "get", "list", "delete", "claim", "release")


async def outcomes(store: Store) -> dict[str, Exception | None]:
    """
    What each store method raises, all called at once (None: it returned).
    """
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "insert": lambda: store.insert(make("x")),
        "update": lambda: store.update(make("x", version=1)),
        "get": lambda: store.get("x"),
        "list": store.list,
        "delete": lambda: store.delete("x"),
        "claim": lambda: store.claim("x", "w", 1.0),
        "release": lambda: store.release("x", "w"),
    }
    out: dict[str, Exception | None] = {}

    async def run(name: str, call: Callable[[], Awaitable[object]]) -> None:
        try:
            await call()
        except Exception as exc:
            out[name] = exc
        else:
            out[name] = None

    async with anyio.create_task_group() as tg:
        for name, call in calls.items():
            tg.start_soon(run, name, call)
    return out


def shown(exc: BaseException) -> str:
    """
    Everything an exception shows when printed or logged: str, repr, and the
    whole traceback with its chained causes.
    """
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_every_method_raises_store_unavailable() -> None:
    """
    With nothing listening, every method raises StoreUnavailableError naming
    itself, with redis-py's ConnectionError chained, and without the URL's
    password anywhere; aclose() still succeeds.
    """
    redis_exceptions = pytest.importorskip("redis.exceptions")
    store = RedisStore(f"redis://:hunter2@127.0.0.1:{_unused_port()}/0")

    raised = await outcomes(store)
    await store.aclose()

    assert set(METHODS) == set(raised)
    for name, exc in raised.items():
        assert isinstance(exc, StoreUnavailableError), (name, exc)
        assert name == exc.operation
        assert isinstance(exc.__cause__, redis_exceptions.ConnectionError)
        assert "hunter2" not in shown(exc)
        assert f"127.0.0.1:{exc.store.rsplit(':', 1)[1]}" in str(exc)


async def test_redis_stopped_mid_use_every_method_raises_store_unavailable(
    own_redis: Any,
) -> None:
    """
    A store whose Redis goes away after it connected raises
    StoreUnavailableError from every method, and closes cleanly.
    """
    store = RedisStore(own_redis.url, namespace=f"t{uuid.uuid4().hex}")
    await store.insert(make("before"))
    own_redis.stop()

    raised = await outcomes(store)
    await store.aclose()

    for name in METHODS:
        assert isinstance(raised[name], StoreUnavailableError), (name, raised[name])


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_wrong_password_is_a_store_error_that_never_shows_it(
    own_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A Redis that requires a password refuses a wrong or missing one: every
    method raises StoreError (not StoreUnavailableError: retrying will not
    help), and the password shows in no message, repr, traceback or log.
    The right one works.
    """
    import redis.asyncio  # noqa: PLC0415

    caplog.set_level(logging.DEBUG)
    admin = redis.asyncio.Redis(host="127.0.0.1", port=own_redis.port)
    await admin.config_set("requirepass", "right-horse-battery")
    await admin.aclose()
    where = f"127.0.0.1:{own_redis.port}/0"
    attempts = [
        (f"redis://:wrong-staple-9@{where}", "wrong-staple-9"),
        (f"redis://default:wr%40ng-staple@{where}", "wr@ng-staple"),
        (f"redis://{where}?password=wrong-in-query", "wrong-in-query"),
        (f"redis://{where}", None),
    ]

    for url, secret in attempts:
        store = RedisStore(url, namespace=f"t{uuid.uuid4().hex}")
        raised = await outcomes(store)
        await store.aclose()

        for name, exc in raised.items():
            assert type(exc) is StoreError, (url, name, exc)
            assert "refused the credentials" in str(exc)
            if secret is not None:
                assert secret not in shown(exc)
                assert secret.replace("@", "%40") not in shown(exc)
                assert secret not in repr(store)
        if secret is not None:
            assert secret not in caplog.text

    async with RedisStore(f"redis://:right-horse-battery@{where}") as store:
        await store.insert(make())
        assert "s1" == (await store.get("s1") or make("wrong")).id
        assert "right-horse-battery" not in repr(store)


@pytest.mark.parametrize(
    ("query", "limit"), [("", MAX_CONNECTIONS), ("?max_connections=4", 4)]
)
async def test_redis_500_concurrent_operations_on_bounded_connections(
    redis_url: str, query: str, limit: int
) -> None:
    """
    500 concurrent inserts, then 500 concurrent claims and gets, all complete
    without error, and the store never holds more connections than its pool
    allows (50 by default, or the URL's max_connections): the excess calls
    wait for a free connection instead of failing. On both backends: under
    trio, the sync client's calls wait in worker threads.
    """
    monitor = connected_clients(redis_url)

    try:
        baseline = peak = await monitor.count()
        store = RedisStore(redis_url + query, namespace=f"t{uuid.uuid4().hex}")
        done = anyio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, await monitor.count())
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            async with anyio.create_task_group() as ops:
                for i in range(500):
                    ops.start_soon(store.insert, make(f"s{i}", credential=None))
            async with anyio.create_task_group() as ops:
                for i in range(500):
                    ops.start_soon(store.claim, f"s{i}", "w", 30.0)
                    ops.start_soon(store.get, f"s{i}")
            done.set()
        # The pool keeps every connection it opened until aclose().
        opened = await monitor.count() - baseline
        records = await store.list()
        await store.aclose()
    finally:
        await monitor.aclose()

    assert 500 == len(records)
    assert opened <= limit
    assert peak - baseline <= limit


async def test_redis_no_free_connection_in_time_is_store_unavailable(
    redis_url: str,
) -> None:
    """
    When no pooled connection comes free within the pool's timeout (the URL's
    timeout), the call raises StoreUnavailableError; the others complete.
    """
    store = RedisStore(
        f"{redis_url}?max_connections=1&timeout=0", namespace=f"t{uuid.uuid4().hex}"
    )

    raised = await outcomes(store)
    await store.aclose()

    unavailable = [e for e in raised.values() if isinstance(e, StoreUnavailableError)]
    others = [e for e in raised.values() if not isinstance(e, StoreUnavailableError)]
    assert unavailable
    assert all("No connection available" in str(exc) for exc in unavailable)
    # A call that got the connection ran: update() finds no record "x" (which
    # call gets it depends on the scheduler; trio's varies the order).
    assert all(e is None or isinstance(e, SessionNotFoundError) for e in others)


def test_redis_repr_of_a_given_client_names_the_server_not_the_password() -> None:
    """
    A store given a client describes it by host, port and database only.
    """
    redis_asyncio = pytest.importorskip("redis.asyncio")
    client = redis_asyncio.Redis(host="cache.invalid", port=6390, db=2, password="pw9")
    store = RedisStore(client=client)

    assert "<RedisStore redis://cache.invalid:6390/2 namespace='tether'>" == repr(store)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_corrupt_record_is_a_store_error(harness: Harness) -> None:
    """
    A record that is not a tether session (edited by hand, or corrupt) makes
    get() and list() raise StoreError, with the decoding error chained.
    """
    store = harness.store
    await store.insert(make())
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store._path) as conn:
            conn.execute("UPDATE tether_sessions SET record = '{not json'")
        conn.close()
    else:
        assert isinstance(store, RedisStore)
        client = await store._redis("test")
        await client.hset(store._key("s", "s1"), "json", '{"id": "s1"}')

    for call in (lambda: store.get("s1"), store.list):
        with pytest.raises(StoreError, match="not a tether session") as info:
            await call()
        assert isinstance(info.value.__cause__, ValueError | KeyError)


async def test_sqlite_unopenable_file_every_method_raises_store_unavailable(
    tmp_path: Path,
) -> None:
    """
    A file that cannot be created (its directory is missing) makes every
    method raise StoreUnavailableError, with the OSError chained.
    """
    store = SqliteStore(tmp_path / "missing" / "t.db")

    raised = await outcomes(store)
    await store.aclose()

    for name in METHODS:
        exc = raised[name]
        assert isinstance(exc, StoreUnavailableError), (name, exc)
        assert name == exc.operation
        assert isinstance(exc.__cause__, OSError)
        assert str(tmp_path / "missing" / "t.db") == exc.store


async def test_sqlite_locked_file_makes_writes_raise_store_unavailable(
    tmp_path: Path,
) -> None:
    """
    While another connection holds the write lock past busy_timeout, every
    write raises StoreUnavailableError with sqlite3's OperationalError
    chained; reads still work (WAL).
    """
    path = tmp_path / "t.db"
    store = SqliteStore(path, busy_timeout=0)
    await store.list()
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        raised = await outcomes(store)
        other.execute("ROLLBACK")
    finally:
        other.close()
        await store.aclose()

    assert {"get": None, "list": None} == {
        k: v for k, v in raised.items() if k in {"get", "list"}
    }
    for name in ("insert", "update", "delete", "claim", "release"):
        exc = raised[name]
        assert isinstance(exc, StoreUnavailableError), (name, exc)
        assert isinstance(exc.__cause__, sqlite3.OperationalError)
        assert "locked" in str(exc)


async def test_sqlite_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """
    A file that is not a SQLite database makes every method raise StoreError
    (not StoreUnavailableError: retrying will not help), sqlite3's error chained.
    """
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a database, " * 100)
    store = SqliteStore(path)

    raised = await outcomes(store)
    await store.aclose()

    for name in METHODS:
        exc = raised[name]
        assert type(exc) is StoreError, (name, exc)
        assert isinstance(exc.__cause__, sqlite3.DatabaseError)


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
async def test_sqlite_creates_owner_only_files(tmp_path: Path) -> None:
    """
    A new store file, and the -wal and -shm files beside it, are readable and
    writable by their owner only (0600).
    """
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    await store.insert(make())
    try:
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in (path, tmp_path / "t.db-wal", tmp_path / "t.db-shm")
        }
    finally:
        await store.aclose()

    assert {"t.db": 0o600, "t.db-wal": 0o600, "t.db-shm": 0o600} == modes


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
async def test_sqlite_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    """
    An existing file keeps the mode its owner gave it; SQLite's -wal and -shm
    files follow it.
    """
    path = tmp_path / "t.db"
    path.touch()
    path.chmod(0o640)
    store = SqliteStore(path)
    await store.insert(make())
    try:
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in (path, tmp_path / "t.db-wal")
        }
    finally:
        await store.aclose()

    assert {"t.db": 0o640, "t.db-wal": 0o640} == modes


# -- SQLite --------------------------------------------------------------------


def _user_version(path: Path) -> int:
    """
    The schema version recorded in a SQLite file, read without tether.
    """
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    """
    Records and lease tokens outlive the store object: the file is the state.
    """
    path = tmp_path / "t.db"
    async with SqliteStore(path) as first:
        await first.insert(make(labels={"k": "v"}))
        token = await first.claim("s1", "alice", 0.0)

    async with SqliteStore(path) as second:
        got = await second.get("s1")
        later = await second.claim("s1", "bob", 5)

    assert got is not None
    assert {"k": "v"} == dict(got.labels)
    assert token is not None
    assert later is not None
    assert later > token


async def test_sqlite_new_file_has_current_schema_in_wal_mode(tmp_path: Path) -> None:
    """
    A new file gets the current schema version and WAL journaling.
    """
    path = tmp_path / "t.db"
    async with SqliteStore(path) as store:
        await store.list()

    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert SCHEMA_VERSION == _user_version(path)
    assert "wal" == mode


async def test_sqlite_waits_for_another_opener_to_switch_to_wal(
    tmp_path: Path,
) -> None:
    """
    Two processes opening a new file at once: the switch to WAL meets a lock
    held by the other one, and SQLite does not wait on its own for that. The
    store waits (within its busy timeout) instead of failing with "database is
    locked".
    """
    path = tmp_path / "t.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")  # what the other opener holds meanwhile
    other.execute("INSERT INTO t VALUES (1)")

    async def release_soon() -> None:
        await anyio.sleep(0.2)
        other.execute("ROLLBACK")

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_soon)
        with pytest.raises(ConfigError, match="not a tether store"):
            # It got past the lock to the schema check (the file has a table).
            async with SqliteStore(path, busy_timeout=5) as store:
                await store.list()
    other.close()
    with sqlite3.connect(path) as conn:
        assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]


async def test_sqlite_migrates_an_older_schema(tmp_path: Path) -> None:
    """
    A file at schema 1 (records, no leases) is upgraded in place and keeps its records.

    Version 1 never shipped on its own; the file is built here by hand to prove
    the upgrade path that later schema changes will take.
    """
    path = tmp_path / "t.db"
    record = attrs.evolve(make(), version=1)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE tether_sessions (
                id TEXT PRIMARY KEY, provider TEXT NOT NULL, state TEXT NOT NULL,
                credential TEXT, version INTEGER NOT NULL, record TEXT NOT NULL
            );
            CREATE INDEX tether_sessions_admission
                ON tether_sessions (provider, credential, state);
            PRAGMA user_version = 1;
            """
        )
        conn.execute(
            "INSERT INTO tether_sessions VALUES (?, ?, ?, ?, ?, ?)",
            ("s1", "fake", "active", "fake:cred", 1, json.dumps(record.to_dict())),
        )

    async with SqliteStore(path) as store:
        got = await store.get("s1")
        token = await store.claim("s1", "alice", 5)
        with pytest.raises(AdmissionError):
            await store.insert(make("s2"), credential_limit=1)

    assert got is not None
    assert record.to_dict() == got.to_dict()
    assert 1 == token
    assert SCHEMA_VERSION == _user_version(path)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    """
    A file written by a newer tether is refused with ConfigError, and left as it was.
    """
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tether_sessions (id TEXT, record BLOB)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    store = SqliteStore(path)
    with pytest.raises(ConfigError, match=f"version {SCHEMA_VERSION + 1}"):
        await store.get("s1")
    await store.aclose()

    assert SCHEMA_VERSION + 1 == _user_version(path)


async def test_sqlite_refuses_a_foreign_database(tmp_path: Path) -> None:
    """
    Another application's SQLite file is not taken over.
    """
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")

    store = SqliteStore(path)
    with pytest.raises(ConfigError, match="not a tether store"):
        await store.list()
    await store.aclose()

    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users"} == tables


async def test_sqlite_failed_write_rolls_back(tmp_path: Path) -> None:
    """
    A refused write leaves no trace and the store stays usable.
    """
    async with SqliteStore(tmp_path / "t.db") as store:
        await store.insert(make("a"), credential_limit=1)
        with pytest.raises(AdmissionError):
            await store.insert(make("b"), credential_limit=1)
        await store.insert(make("c", credential="fake:other"))

        assert ["a", "c"] == [s.id for s in await store.list()]


async def test_sqlite_closed_store_refuses_use(tmp_path: Path) -> None:
    """
    After aclose(), using the store raises StoreClosedError (a RuntimeError:
    misuse) instead of reopening the file.
    """
    store = SqliteStore(tmp_path / "t.db")
    await store.list()
    await store.aclose()

    with pytest.raises(StoreClosedError, match="closed") as info:
        await store.get("s1")

    assert isinstance(info.value, RuntimeError)
    assert "get" == info.value.operation


# -- Redis ---------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_refuses_an_unknown_layout(redis_url: str) -> None:
    """
    A namespace whose layout version this tether does not know is refused.

    asyncio only: redis-py's async client does not run under trio.
    """
    import redis.asyncio  # noqa: PLC0415

    namespace = f"t{uuid.uuid4().hex}"
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set(f"{namespace}:v", "99")
        store = RedisStore(client=client, namespace=namespace)
        with pytest.raises(ConfigError, match="version '99'"):
            await store.get("s1")
        await store.aclose()

        # The client was ours: the store left it open.
        assert b"99" == await client.get(f"{namespace}:v")
    finally:
        await client.aclose()


async def test_redis_upgrades_a_layout_1_namespace_in_place(redis_url: str) -> None:
    """
    A namespace an earlier tether wrote (layout 1: no shard sets, no change
    feed) is upgraded on first use: its records stay, each lands in its
    shard, and the change feed starts from them.
    """
    import redis  # noqa: PLC0415

    namespace = f"t{uuid.uuid4().hex}"
    records = [make(f"s{i}") for i in range(5)]

    def write_layout_1() -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            client.set(f"{namespace}:v", "1")
            for seq, record in enumerate(records, start=1):
                client.hset(
                    f"{namespace}:s:{record.id}",
                    mapping={
                        "json": json.dumps(attrs.evolve(record, version=1).to_dict()),
                        "version": 1,
                        "live": "",
                    },
                )
                client.zadd(f"{namespace}:ids", {record.id: seq})
            client.set(f"{namespace}:seq", len(records))
        finally:
            client.close()

    await anyio.to_thread.run_sync(write_layout_1)
    async with RedisStore(redis_url, namespace=namespace, shards=4) as store:
        listed = [s.id for s in await store.list()]
        by_shard = {k: await store.shard_sessions(k) for k in range(4)}
        cursor, changed = await store.changes(0)

    assert [r.id for r in records] == listed
    assert sorted(listed) == sorted(s.id for ss in by_shard.values() for s in ss)
    for k, sessions in by_shard.items():
        assert all(k == store.shard_of(s.id) for s in sessions)
    assert sorted(listed) == sorted(s.id for s in changed)
    assert len(records) == cursor


def in_shards(store: RedisStore, ids: list[str], *shards: int) -> list[str]:
    """
    The ids of *ids* in *shards*, in order.
    """
    return [sid for sid in ids if store.shard_of(sid) in shards]


async def test_redis_changes_of_some_shards_return_only_theirs(redis_url: str) -> None:
    """
    Each shard keeps its own change feed: changes(cursor, shards=...) returns
    the records written to those shards and nothing of the others; without
    shards, every shard's. Deleted records leave their feed.
    """
    async with RedisStore(
        redis_url, namespace=f"t{uuid.uuid4().hex}", shards=4
    ) as store:
        start, nothing = await store.changes(None)
        ids = [f"s{i}" for i in range(40)]
        for sid in ids:
            await store.insert(make(sid))
        gone = in_shards(store, ids, 3)[0]
        await store.delete(gone)
        ids.remove(gone)
        one = await store.changes(start, shards=[0])
        two = await store.changes(start, shards=[1, 3])
        empty = await store.changes(start, shards=[])
        every = await store.changes(start)
        with pytest.raises(ConfigError, match="no shard 4"):
            await store.changes(start, shards=[4])

    assert [] == nothing
    assert all(in_shards(store, ids, k) for k in range(4))
    assert in_shards(store, ids, 0) == [s.id for s in one[1]]
    assert in_shards(store, ids, 1, 3) == [s.id for s in two[1]]
    assert [] == empty[1]
    assert ids == [s.id for s in every[1]]
    # 40 inserts, one delete: each call delivered every write up to now.
    assert {start + 40} == {one[0], two[0], empty[0], every[0]}


async def test_redis_changes_miss_nothing_across_batch_cuts(redis_url: str) -> None:
    """
    With a batch of 3, reading two shards whose writes do not interleave
    (all of shard A's, then another shard's, then all of shard B's), while
    records are updated, inserted and deleted between reads: every record of
    the two shards is delivered at its last version, none of the third's,
    and no batch is over the limit. The third shard, read alone, is cut by
    its own feed's limit, and misses nothing either.
    """
    async with RedisStore(
        redis_url, namespace=f"t{uuid.uuid4().hex}", shards=3
    ) as store:
        store._changes_batch = 3
        cursor, _ = await store.changes(None)
        start = cursor
        ids = [f"s{i}" for i in range(60)]
        await store.shard_count()
        a, b, c = (in_shards(store, ids, k) for k in range(3))
        for sid in a[:5] + c[:5] + b[:5]:
            await store.insert(make(sid))
        seen: dict[str, int] = {}
        sizes = []
        while True:
            cursor, records = await store.changes(cursor, shards=[0, 1])
            sizes.append(len(records))
            for record in records:
                seen[record.id] = record.version
            if len(sizes) == 1:
                # Behind the cursor now: written again, it shows again.
                again = await store.get(a[0])
                assert again is not None
                await store.update(again.evolve(data={"n": 2}))
                await store.insert(make(b[5]))
                await store.delete(b[4])
                await store.insert(make(c[5]))
            if not records:
                break
        current = {
            s.id: s.version for s in await store.list() if store.shard_of(s.id) != 2
        }
        # One shard alone, cut at the limit by its own feed.
        alone: list[str] = []
        cursor = start
        while True:
            cursor, records = await store.changes(cursor, shards=[2])
            alone += [r.id for r in records]
            if not records:
                break

    assert current == seen
    assert c[:6] == alone
    assert 2 == seen[a[0]]
    assert max(sizes) == 3
    assert len(sizes) >= 4


async def test_redis_shard_sessions_reads_several_shards_at_once(
    redis_url: str,
) -> None:
    """
    shard_sessions(k, ...) returns the records of every shard given, in one
    round trip; with none, nothing; a shard the namespace lacks is refused.
    """
    async with RedisStore(
        redis_url, namespace=f"t{uuid.uuid4().hex}", shards=4
    ) as store:
        ids = [f"s{i}" for i in range(20)]
        for sid in ids:
            await store.insert(make(sid))
        several = await store.shard_sessions(0, 2)
        singles = [*await store.shard_sessions(0), *await store.shard_sessions(2)]
        none = await store.shard_sessions()
        with pytest.raises(ConfigError, match="no shard 4"):
            await store.shard_sessions(1, 4)

    assert sorted(in_shards(store, ids, 0, 2)) == sorted(s.id for s in several)
    assert sorted(s.id for s in singles) == sorted(s.id for s in several)
    assert [] == none


async def test_redis_shard_count_is_fixed_with_the_namespace(redis_url: str) -> None:
    """
    A namespace keeps the shard count it was made with: a store asking for
    another is refused; one that asks for none uses it. A count below 1 is
    refused before anything is sent.
    """
    namespace = f"t{uuid.uuid4().hex}"
    async with RedisStore(redis_url, namespace=namespace, shards=8) as made:
        await made.get("s1")
    async with RedisStore(redis_url, namespace=namespace) as default:
        count = await default.shard_count()
    other = RedisStore(redis_url, namespace=namespace, shards=16)

    with pytest.raises(ConfigError, match="has 8 shards, not 16"):
        await other.get("s1")
    await other.aclose()
    assert 8 == count
    with pytest.raises(ConfigError, match="at least 1"):
        RedisStore(redis_url, shards=0)


async def test_redis_namespaces_are_separate(redis_url: str) -> None:
    """
    Two namespaces on one database share neither records nor admission counts.
    """
    tag = uuid.uuid4().hex
    async with (
        RedisStore(redis_url, namespace=f"one{tag}") as one,
        RedisStore(redis_url, namespace=f"two{tag}") as two,
    ):
        await one.insert(make(), credential_limit=1)
        await two.insert(make(), credential_limit=1)

        assert ["s1"] == [s.id for s in await one.list()]
        assert ["s1"] == [s.id for s in await two.list()]
        await one.delete("s1")
        assert [] == await one.list()
        assert ["s1"] == [s.id for s in await two.list()]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_redis_given_an_asyncio_client_refuses_trio() -> None:
    """
    Under trio, a store given a ``redis.asyncio`` client raises a ConfigError
    that says to give a URL instead (a store built from one runs under trio).
    """
    redis_asyncio = pytest.importorskip("redis.asyncio")
    # Nothing listens on port 1; the check comes before any connection.
    store = RedisStore(client=redis_asyncio.Redis(host="127.0.0.1", port=1))

    with pytest.raises(ConfigError, match=r"needs asyncio.*give RedisStore a url"):
        await store.get("s1")


def test_redis_repr_hides_the_password() -> None:
    """
    A URL's password never shows in the store's repr.
    """
    pytest.importorskip("redis")
    store = RedisStore("redis://user:hunter2@example.invalid:6380/3")

    assert "hunter2" not in repr(store)
    assert "example.invalid:6380/3" in repr(store)


def test_redis_takes_a_url_or_a_client() -> None:
    """
    Neither or both is a ConfigError, as is a namespace with a colon.
    """
    with pytest.raises(ConfigError):
        RedisStore()
    with pytest.raises(ConfigError):
        RedisStore("redis://x", namespace="a:b")


# -- open_store ----------------------------------------------------------------


def test_open_store_memory() -> None:
    """
    memory:// is a new MemoryStore each time.
    """
    first = open_store("memory://")

    assert isinstance(first, tether.MemoryStore)
    assert first is not open_store("memory://")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///state/t.db", "state/t.db"),
        ("sqlite:////var/lib/tether/t.db", "/var/lib/tether/t.db"),
        ("sqlite:///my%20state.db", "my state.db"),
    ],
)
def test_open_store_sqlite_paths(url: str, expected: str) -> None:
    """
    Three slashes then a relative path; four for an absolute one.
    """
    store = open_store(url)

    assert isinstance(store, SqliteStore)
    assert expected == store._path


def test_open_store_sqlite_busy_timeout() -> None:
    """
    busy_timeout is read from the query, in seconds.
    """
    store = open_store("sqlite:///t.db?busy_timeout=2.5")

    assert isinstance(store, SqliteStore)
    assert 2.5 == store._busy_timeout


async def test_open_store_sqlite_works(tmp_path: Path) -> None:
    """
    A store opened by URL reads and writes its file.
    """
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    await store.insert(make())
    await store.aclose()

    async with SqliteStore(tmp_path / "t.db") as again:
        assert ["s1"] == [s.id for s in await again.list()]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_open_store_redis(redis_url: str) -> None:
    """
    redis:// opens a RedisStore; the namespace comes from the query.

    asyncio only: redis-py's async client does not run under trio.
    """
    namespace = f"t{uuid.uuid4().hex}"
    store = open_store(f"{redis_url}?namespace={namespace}")
    await store.insert(make())

    assert isinstance(store, RedisStore)
    async with RedisStore(redis_url, namespace=namespace) as same:
        assert ["s1"] == [s.id for s in await same.list()]
    await store.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "postgres://localhost/db",
        "file:///tmp/t.db",
        "t.db",
        "",
        "memory://somewhere",
        "sqlite://t.db",
        "sqlite:///",
        "sqlite:///t.db?mode=ro",
        "sqlite:///t.db?busy_timeout=soon",
    ],
)
def test_open_store_refuses(url: str) -> None:
    """
    Unknown schemes and malformed URLs are ConfigErrors that say what would work.
    """
    with pytest.raises(ConfigError) as info:
        open_store(url)

    assert any(
        word in str(info.value) for word in ("memory://", "sqlite:///", "seconds")
    )


def test_open_store_error_hides_the_password() -> None:
    """
    A refused URL is quoted without its password.
    """
    with pytest.raises(ConfigError) as info:
        open_store("mysql://root:hunter2@db/x")

    assert "hunter2" not in str(info.value)
    assert "redis://" in str(info.value)


def test_public_names() -> None:
    """
    tether.stores exports exactly its documented names.
    """
    import tether.stores  # noqa: PLC0415

    public = {
        name
        for name in dir(tether.stores)
        # pytest rewrites tether's modules (it is a pytest plugin): skip "@py_*".
        if not name.startswith(("_", "@")) and name != "annotations"
    }
    assert {"RedisStore", "SqliteStore", "open_store"} == set(tether.stores.__all__)
    assert set(tether.stores.__all__) == public
