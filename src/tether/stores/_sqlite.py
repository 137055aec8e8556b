"""
A store in one SQLite file: durable, shared by the processes of one machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import anyio.to_thread
import attrs

from tether._session import Session, SessionState
from tether._store import matches
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
from tether.stores._errors import decode


T = TypeVar("T")

#: The states that count against a credential's limit, spelled as stored.
_LIVE_STATES: Final = tuple(sorted(s.value for s in SessionState if s.is_live))

# Only placeholders are interpolated; the values are bound.
_COUNT_LIVE: Final = (
    "SELECT count(*) FROM tether_sessions WHERE provider = ? AND credential = ?"  # noqa: S608
    f" AND state IN ({', '.join('?' * len(_LIVE_STATES))})"
)

#: The schema is built by numbered steps; ``PRAGMA user_version`` records how
#: many have run. A file at an older version is brought up to date when it is
#: opened; a newer one (written by a newer tether) is refused, never misread.
_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the records, with the columns that admission and filters query.
    """
    CREATE TABLE tether_sessions (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        credential TEXT,
        version INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX tether_sessions_admission
        ON tether_sessions (provider, credential, state);
    """,
    # 2: leases on the sessions' background work, with fencing tokens. A row
    # outlives its release (owner '' and deadline 0), so tokens only grow.
    """
    CREATE TABLE tether_leases (
        session_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        token INTEGER NOT NULL,
        deadline REAL NOT NULL
    );
    """,
)

#: The schema version this tether reads and writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)

#: The mode of a store file tether creates: its owner's only. SQLite gives the
#: -wal and -shm files it creates beside it the same mode.
FILE_MODE: Final = 0o600

#: SQLite's primary result codes that mean "cannot get at the file now":
#: locked by another process, not openable, out of disk, an I/O error.
_UNAVAILABLE: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOLFS,
    }
)


def _dumps(session: Session) -> str:
    return json.dumps(session.to_dict(), separators=(",", ":"), sort_keys=True)


@attrs.define
class SqliteStore:
    """
    Session records in a SQLite file, safe to share between processes.

    Every write runs in a ``BEGIN IMMEDIATE`` transaction, so admission
    (counting a credential's live sessions, then inserting) and the version
    and fencing checks of ``update()`` are atomic across every process that
    opens the same file. The database runs in WAL mode, and a writer waits up
    to *busy_timeout* seconds for another's transaction to finish.

    Blocking calls run in worker threads (``anyio.to_thread.run_sync``),
    on asyncio and trio alike, over one connection guarded by a lock. The file
    is opened, and its schema created or migrated, on first use.

    Args:
        path: The database file. Use a local disk: SQLite's locking is not
            reliable over network file systems.
        clock: Seconds since the epoch, for lease deadlines. Wall-clock time,
            because the processes sharing the file share no monotonic clock.
        busy_timeout: Seconds a write waits for another process's lock before
            failing with :class:`~tether.exceptions.StoreUnavailableError`.

    A file the store creates is readable and writable by its owner only
    (``0600``), and so are the ``-wal`` and ``-shm`` files SQLite creates
    beside it. An existing file keeps its mode.

    Raises:
        ConfigError: On first use, when the file holds a schema newer than
            this tether knows, or is not a tether store.
        StoreUnavailableError: From any method, when the file cannot be
            opened or created, the disk is full or failing, or another process
            holds the lock past *busy_timeout*.
        StoreError: From any method, when SQLite fails otherwise (e.g. the
            file is not a database, or is corrupt).

    .. versionadded:: 0.1
    """

    _path: str = attrs.field(alias="path", converter=os.fspath)
    _clock: Callable[[], float] = attrs.field(
        default=time.time, alias="clock", kw_only=True
    )
    _busy_timeout: float = attrs.field(
        default=30.0,
        alias="busy_timeout",
        kw_only=True,
        validator=attrs.validators.ge(0),
    )
    _conn: sqlite3.Connection | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    # -- plumbing ------------------------------------------------------------

    def _create_private(self) -> None:
        # SQLite creates a missing file with mode 0644 (less the umask), and
        # gives its -wal and -shm files the main file's mode: create the main
        # file ourselves, owner-only, and SQLite opens it as an empty database.
        # O_EXCL: a file that exists (perhaps made by another process a moment
        # ago) is left as it is; its mode is its owner's choice.
        if self._path in {"", ":memory:"}:
            return
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            return
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        self._create_private()
        # isolation_level=None: we issue BEGIN and COMMIT ourselves.
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL takes an exclusive lock, and SQLite does
        # not wait on the busy timeout for it: a second process opening the
        # file at the same moment gets "database is locked" at once. Retry
        # within the busy timeout; a file already in WAL needs no switch.
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode in (
                    sqlite3.SQLITE_BUSY,
                    sqlite3.SQLITE_LOCKED,
                )
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            else:
                return

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Checked inside the write lock, so two processes opening a new file at
        # once run the migrations once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                msg = (
                    f"{self._path}: the store's schema is version {version}, "
                    f"this tether knows versions up to {SCHEMA_VERSION}; "
                    "upgrade tether to open it"
                )
                raise ConfigError(msg)
            if version == 0:
                foreign = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                ).fetchone()[0]
                if foreign:
                    msg = (
                        f"{self._path} is a SQLite database, but not a tether "
                        "store (it has tables and no tether schema version)"
                    )
                    raise ConfigError(msg)
            for script in _MIGRATIONS[version:]:
                # executescript() would commit first; run statement by statement
                # to stay in this transaction.
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own integer.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _call(
        self, operation: str, fn: Callable[[sqlite3.Connection], T], write: bool
    ) -> T:
        with self._lock:
            if self._closed:
                msg = f"{operation}: the store is closed"
                raise StoreClosedError(msg, store=self._path, operation=operation)
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            if not write:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    async def _run(
        self, operation: str, fn: Callable[[sqlite3.Connection], T], write: bool
    ) -> T:
        try:
            return await anyio.to_thread.run_sync(self._call, operation, fn, write)
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc, operation) from exc

    def _translate(self, exc: sqlite3.Error | OSError, operation: str) -> StoreError:
        cls: type[StoreError] = StoreError
        what = "SQLite failed on"
        if isinstance(exc, OSError):
            cls, what = StoreUnavailableError, "cannot open"
        elif (exc.sqlite_errorcode & 0xFF) in _UNAVAILABLE:
            cls, what = StoreUnavailableError, "cannot use"
        msg = f"{operation}: {what} {self._path}: {exc}"
        return cls(msg, store=self._path, operation=operation)

    # -- records ---------------------------------------------------------------

    async def insert(
        self, session: Session, *, credential_limit: int | None = None
    ) -> Session:
        stored = attrs.evolve(session, version=1)

        def insert(conn: sqlite3.Connection) -> None:
            exists = conn.execute(
                "SELECT 1 FROM tether_sessions WHERE id = ?", (session.id,)
            ).fetchone()
            if exists:
                msg = f"a session with id {session.id} exists already"
                raise SessionExistsError(
                    msg, store=self._path, operation="insert", session_id=session.id
                )
            if credential_limit is not None and session.credential is not None:
                held = conn.execute(
                    _COUNT_LIVE,
                    (session.provider, session.credential, *_LIVE_STATES),
                ).fetchone()[0]
                if held >= credential_limit:
                    msg = (
                        f"{session.provider}: the credential holds {held} live "
                        f"session(s), the limit is {credential_limit}"
                    )
                    raise AdmissionError(
                        msg,
                        provider=session.provider,
                        credential=session.credential,
                        limit=credential_limit,
                    )
            conn.execute(
                "INSERT INTO tether_sessions"
                " (id, provider, state, credential, version, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    stored.id,
                    stored.provider,
                    stored.state.value,
                    stored.credential,
                    stored.version,
                    _dumps(stored),
                ),
            )

        await self._run("insert", insert, write=True)
        return stored

    async def update(self, session: Session, *, fence: int | None = None) -> Session:
        stored = attrs.evolve(session, version=session.version + 1)

        def update(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT version FROM tether_sessions WHERE id = ?", (session.id,)
            ).fetchone()
            if row is None:
                raise SessionNotFoundError(
                    f"no session {session.id}", session_id=session.id
                )
            if fence is not None:
                lease = conn.execute(
                    "SELECT token FROM tether_leases WHERE session_id = ?",
                    (session.id,),
                ).fetchone()
                if lease is not None and lease[0] > fence:
                    msg = (
                        f"session {session.id}: lease token {fence} was "
                        f"superseded by {lease[0]}"
                    )
                    raise LeaseLostError(
                        msg, session_id=session.id, expected=fence, actual=lease[0]
                    )
            if row[0] != session.version:
                msg = (
                    f"session {session.id} changed since it was read "
                    f"(version {session.version}, now {row[0]})"
                )
                raise StaleRecordError(
                    msg,
                    session_id=session.id,
                    expected=session.version,
                    actual=row[0],
                )
            conn.execute(
                "UPDATE tether_sessions SET provider = ?, state = ?,"
                " credential = ?, version = ?, record = ? WHERE id = ?",
                (
                    stored.provider,
                    stored.state.value,
                    stored.credential,
                    stored.version,
                    _dumps(stored),
                    stored.id,
                ),
            )

        await self._run("update", update, write=True)
        return stored

    async def get(self, session_id: str) -> Session | None:
        def get(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT record FROM tether_sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        record = await self._run("get", get, write=False)
        if record is None:
            return None
        return decode(record, store=self._path, operation="get")

    async def list(
        self,
        *,
        provider: str | None = None,
        states: Sequence[SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Session]:
        where: list[str] = []
        args: list[Any] = []
        if provider is not None:
            where.append("provider = ?")
            args.append(provider)
        if states is not None:
            values = [SessionState(s).value for s in states]
            where.append(f"state IN ({', '.join('?' * len(values))})")
            args.extend(values)
        query = "SELECT record FROM tether_sessions"
        if where:
            query += " WHERE " + " AND ".join(where)
        # Insertion order, as the in-memory store lists them.
        query += " ORDER BY rowid"

        def select(conn: sqlite3.Connection) -> list[str]:
            return [str(row[0]) for row in conn.execute(query, args)]

        sessions = [
            decode(r, store=self._path, operation="list")
            for r in await self._run("list", select, write=False)
        ]
        # Labels live inside the JSON; filter them here.
        return [s for s in sessions if matches(s, labels=labels)]

    async def count_live(self, provider: str, credential: str) -> int:
        """
        How many live sessions of *provider* hold *credential* (one indexed
        count, as admission makes).

        .. versionadded:: Unreleased
        """

        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                _COUNT_LIVE, (provider, credential, *_LIVE_STATES)
            ).fetchone()
            return int(row[0])

        return await self._run("count_live", count, write=False)

    async def delete(self, session_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM tether_sessions WHERE id = ?", (session_id,))
            conn.execute(
                "DELETE FROM tether_leases WHERE session_id = ?", (session_id,)
            )

        await self._run("delete", delete, write=True)

    # -- leases ----------------------------------------------------------------

    async def claim(self, session_id: str, owner: str, ttl: float) -> int | None:
        def claim(conn: sqlite3.Connection) -> int | None:
            # Read the clock inside the transaction: the lease is judged at the
            # moment this process holds the write lock.
            now = self._clock()
            row = conn.execute(
                "SELECT owner, token, deadline FROM tether_leases WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            if row is not None and row[2] > now and row[0] != owner:
                return None
            if row is not None and row[2] > now:
                token = int(row[1])
            else:
                token = (int(row[1]) if row is not None else 0) + 1
            conn.execute(
                "INSERT INTO tether_leases (session_id, owner, token, deadline)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
                " owner = excluded.owner, token = excluded.token,"
                " deadline = excluded.deadline",
                (session_id, owner, token, now + ttl),
            )
            return token

        return await self._run("claim", claim, write=True)

    async def release(self, session_id: str, owner: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            # Keep the token, so the next owner's is larger.
            conn.execute(
                "UPDATE tether_leases SET owner = '', deadline = 0"
                " WHERE session_id = ? AND owner = ?",
                (session_id, owner),
            )

        await self._run("release", release, write=True)

    # -- lifetime --------------------------------------------------------------

    async def aclose(self) -> None:
        """
        Close the connection; the store cannot be used afterwards.
        """

        def close() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        try:
            await anyio.to_thread.run_sync(close)
        except sqlite3.Error as exc:
            raise self._translate(exc, "aclose") from exc

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<SqliteStore path={self._path!r}>"
