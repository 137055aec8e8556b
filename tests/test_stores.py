"""
The store contract, run against every store; then what each durable store adds.

The contract tests run on memory and SQLite under asyncio and trio, and on Redis
under asyncio only: redis-py's async client is built on asyncio and does not run
under trio (``RedisStore`` refuses trio with a ConfigError, tested below).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import attrs
import pytest

import tether
from tether.abc import Store
from tether.exceptions import (
    AdmissionError,
    ConfigError,
    LeaseLostError,
    SessionNotFoundError,
    StaleRecordError,
)
from tether.stores import RedisStore, SqliteStore, open_store
from tether.stores._sqlite import SCHEMA_VERSION


S = tether.SessionState

# Which store on which event loop. Redis is asyncio-only: see the module docstring.
COMBOS = [
    pytest.param("memory", "asyncio", id="memory-asyncio"),
    pytest.param("memory", "trio", id="memory-trio"),
    pytest.param("sqlite", "asyncio", id="sqlite-asyncio"),
    pytest.param("sqlite", "trio", id="sqlite-trio"),
    pytest.param("redis", "asyncio", id="redis-asyncio"),
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
        An id can be inserted once; the first record stays.
        """
        await harness.store.insert(make(remote_id="first"))

        with pytest.raises(ValueError, match="exists already"):
            await harness.store.insert(make(remote_id="second"))

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
    After aclose(), using the store raises instead of reopening the file.
    """
    store = SqliteStore(tmp_path / "t.db")
    await store.list()
    await store.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await store.get("s1")


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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_namespaces_are_separate(redis_url: str) -> None:
    """
    Two namespaces on one database share neither records nor admission counts.

    asyncio only: redis-py's async client does not run under trio.
    """
    async with (
        RedisStore(redis_url, namespace="one") as one,
        RedisStore(redis_url, namespace="two") as two,
    ):
        await one.insert(make(), credential_limit=1)
        await two.insert(make(), credential_limit=1)

        assert ["s1"] == [s.id for s in await one.list()]
        assert ["s1"] == [s.id for s in await two.list()]
        await one.delete("s1")
        assert [] == await one.list()
        assert ["s1"] == [s.id for s in await two.list()]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_redis_refuses_trio() -> None:
    """
    Under trio, RedisStore raises a ConfigError naming the reason and the alternatives.
    """
    pytest.importorskip("redis")
    # Nothing listens on port 1; the check comes before any connection.
    store = RedisStore("redis://127.0.0.1:1/0")

    with pytest.raises(ConfigError, match=r"needs asyncio.*SqliteStore"):
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
