"""
A store in Redis: shared by processes on many machines.

Key layout (``ns`` is the namespace, ``tether`` by default)::

    ns:v                  the layout version ("1"); any other value is refused
    ns:seq                a counter giving each record its place in listings
    ns:ids                sorted set of every session id, scored by ns:seq
    ns:s:<id>             hash: json (Session.to_dict()), version, live (the
                          live-set key the id is in, or "")
    ns:live:<pc>          set of the live session ids of one provider and
                          credential; <pc> is the JSON array [provider, credential]
    ns:lease:<id>         the lease owner, expiring with the lease (PX)
    ns:token:<id>         the session's last fencing token (a counter)

Every write is one Lua script, so admission, the version check and the fencing
check run atomically on the server. Lease deadlines use the server's clock.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
import sniffio

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


if TYPE_CHECKING:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.commands.core import AsyncScript


#: The key layout this tether reads and writes.
LAYOUT_VERSION: Final = "1"

#: Connections a store built from a URL opens at most; a call beyond them
#: waits for one to come free. The URL's ``max_connections`` overrides it.
MAX_CONNECTIONS: Final = 50
#: Seconds a call waits for a free connection before failing with
#: StoreUnavailableError. The URL's ``timeout`` overrides it.
POOL_TIMEOUT: Final = 20.0
#: Seconds to establish a connection. The URL's ``socket_connect_timeout``
#: overrides it.
CONNECT_TIMEOUT: Final = 10.0

_CHECK_LAYOUT: Final = """
local v = redis.call('GET', KEYS[1])
if not v then
    redis.call('SET', KEYS[1], ARGV[1])
    return ARGV[1]
end
return v
"""

# KEYS: record, live set, ids, seq
# ARGV: id, json, live ("1"/"0"), limit (-1: none)
# Returns {0} stored, {1} id exists, {2, held} admission refused.
_INSERT: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return {1}
end
local limit = tonumber(ARGV[4])
if limit >= 0 then
    local held = redis.call('SCARD', KEYS[2])
    if held >= limit then
        return {2, held}
    end
end
local live = ''
if ARGV[3] == '1' then
    redis.call('SADD', KEYS[2], ARGV[1])
    live = KEYS[2]
end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'version', 1, 'live', live)
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[1])
return {0}
"""

# KEYS: record, token, live set of the new record
# ARGV: id, json, live ("1"/"0"), expected version, fence (-1: none)
# Returns {0} stored, {1} no record, {2, token} fenced off, {3, version} stale.
# The old live set's key is read from the record: a standalone Redis (or one
# behind Sentinel) only, not Redis Cluster.
_UPDATE: Final = """
local current = redis.call('HMGET', KEYS[1], 'version', 'live')
if not current[1] then
    return {1}
end
local fence = tonumber(ARGV[5])
if fence >= 0 then
    local token = tonumber(redis.call('GET', KEYS[2]) or '0')
    if token > fence then
        return {2, token}
    end
end
local version = tonumber(current[1])
if version ~= tonumber(ARGV[4]) then
    return {3, version}
end
if current[2] ~= '' then
    redis.call('SREM', current[2], ARGV[1])
end
local live = ''
if ARGV[3] == '1' then
    redis.call('SADD', KEYS[3], ARGV[1])
    live = KEYS[3]
end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'version', version + 1, 'live', live)
return {0}
"""

# KEYS: record, lease, token, ids; ARGV: id
_DELETE: Final = """
local live = redis.call('HGET', KEYS[1], 'live')
if live and live ~= '' then
    redis.call('SREM', live, ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return 0
"""

# KEYS: lease, token; ARGV: owner, ttl in milliseconds
# Returns the fencing token, or -1 when another owner's lease is live.
_CLAIM: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    return -1
end
local token
if holder then
    token = tonumber(redis.call('GET', KEYS[2]) or '0')
end
if not token or token == 0 then
    token = redis.call('INCR', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: lease; ARGV: owner. The token stays, so the next owner's is larger.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: ids; ARGV: record key prefix. One consistent snapshot.
_LIST: Final = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local record = redis.call('HGET', ARGV[1] .. id, 'json')
    if record then
        out[#out + 1] = record
    end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dumps(session: Session) -> str:
    return json.dumps(session.to_dict(), separators=(",", ":"), sort_keys=True)


def _safe_url(url: str) -> str:
    # The URL may carry a password: show where, never who.
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _secrets(url: str | None) -> list[str]:
    # A password may come in the user info or, for redis-py, in the query.
    if not url:
        return []
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    found = [parts.password or "", *query.get("password", [])]
    # Both as written and as redis-py reads it (percent-decoded).
    return [v for s in found if s for v in {s, urllib.parse.unquote(s)}]


def _describe_client(client: Redis) -> str:
    # Where a client given to us points, from its pool's connection settings,
    # which we read selectively: they hold the password too.
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    if "host" in kwargs:
        host, port, db = kwargs["host"], kwargs.get("port", 6379), kwargs.get("db", 0)
        return f"redis://{host}:{port}/{db}"
    return "a Redis client"


def _require_asyncio() -> None:
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library != "asyncio":
        msg = (
            f"RedisStore needs asyncio, but runs under {library or 'no event loop'}: "
            "redis-py's async client is built on asyncio. Use SqliteStore or "
            "MemoryStore under trio"
        )
        raise ConfigError(msg)


@attrs.define
class RedisStore:
    """
    Session records in Redis, shared by processes on many machines.

    Admission, the optimistic version check, fencing and lease claims each run
    as one Lua script, atomically on the server. Leases expire by the server's
    clock (``SET ... PX``), so the processes sharing a store need no agreement
    on time.

    It needs asyncio: redis-py's async client does not run under trio, and the
    store raises :class:`~tether.exceptions.ConfigError` when used there.

    Built from a URL, the store owns a blocking connection pool: at most 50
    connections (the URL's ``max_connections``), and a call beyond them waits
    up to 20 seconds (the URL's ``timeout``) for one to come free, so any
    number of concurrent calls is served by a bounded number of connections.

    Args:
        url: A ``redis://`` (or ``rediss://``, ``unix://``) URL; the store owns
            the client it builds and closes it in ``aclose()``.
        client: An existing ``redis.asyncio.Redis`` instead of *url*; you
            own it (and its pool's limits), and close it yourself.
        namespace: Prefix of every key, so stores can share a database.

    Raises:
        ConfigError: On first use, when the namespace holds a key layout this
            tether does not know, or when run outside asyncio.
        StoreUnavailableError: From any method, when Redis cannot be reached,
            times out, or no pooled connection comes free in time.
        StoreError: From any method, when Redis refuses the credentials or
            fails a command. The message and repr never show the password.

    .. versionadded:: 0.1
    """

    _url: str | None = attrs.field(default=None, alias="url")
    _client: Redis | None = attrs.field(
        default=None, alias="client", kw_only=True, repr=False
    )
    _namespace: str = attrs.field(default="tether", alias="namespace", kw_only=True)
    _owns_client: bool = attrs.field(default=False, init=False)
    _ready: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _scripts: dict[str, AsyncScript] = attrs.field(factory=dict, init=False)
    _pool: BlockingConnectionPool | None = attrs.field(default=None, init=False)
    _where: str = attrs.field(default="", init=False)

    def __attrs_post_init__(self) -> None:
        if (self._url is None) == (self._client is None):
            msg = "RedisStore takes a url or a client, and not both"
            raise ConfigError(msg)
        if not self._namespace or ":" in self._namespace:
            msg = (
                f"a namespace is a non-empty name without ':', not {self._namespace!r}"
            )
            raise ConfigError(msg)
        if self._client is None:
            try:
                import redis.asyncio  # noqa: PLC0415
            except ImportError as exc:
                msg = "RedisStore needs redis-py: install tether[redis]"
                raise ConfigError(msg) from exc
            assert self._url is not None  # noqa: S101
            # redis-py's default pool raises MaxConnectionsError past its limit;
            # a blocking one makes the excess calls wait. Nothing connects
            # until first use. Options in the URL win over these defaults.
            self._pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url,
                max_connections=MAX_CONNECTIONS,
                timeout=POOL_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
            )
            self._client = redis.asyncio.Redis(connection_pool=self._pool)
            self._owns_client = True
        self._where = (
            _describe_client(self._client)
            if self._url is None
            else _safe_url(self._url)
        )

    # -- plumbing ------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._namespace, *parts))

    def _live_key(self, session: Session) -> str:
        pc = json.dumps([session.provider, session.credential], separators=(",", ":"))
        return self._key("live", pc)

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        # Everything redis-py raises becomes ours, with its exception chained.
        try:
            yield
        except Exception as exc:
            translated = self._translate(exc, operation)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, exc: Exception, operation: str) -> StoreError | None:
        try:
            import redis.exceptions as rex  # noqa: PLC0415
        except ImportError:  # pragma: no cover - a client was given, so it is there
            return None
        cls: type[StoreError]
        if isinstance(
            exc,
            (
                rex.AuthenticationError,
                rex.AuthorizationError,
                rex.AuthenticationWrongNumberOfArgsError,
                rex.NoPermissionError,
            ),
        ):
            cls, what = StoreError, "Redis refused the credentials"
        elif isinstance(
            exc, (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError, OSError)
        ):
            # OSError includes the built-in TimeoutError asyncio raises.
            cls, what = StoreUnavailableError, "cannot reach Redis"
        elif isinstance(exc, rex.RedisError):
            cls, what = StoreError, "Redis failed"
        else:
            return None
        detail = str(exc) or type(exc).__name__
        for secret in _secrets(self._url):
            # redis-py does not quote it, but a message is no place to find out.
            detail = detail.replace(secret, "***")
        msg = f"{operation}: {what} at {self._where}: {detail}"
        return cls(msg, store=self._where, operation=operation)

    async def _redis(self, operation: str) -> Redis:
        _require_asyncio()
        if self._closed or self._client is None:
            msg = f"{operation}: the store is closed"
            raise StoreClosedError(msg, store=self._where, operation=operation)
        client = self._client
        if not self._ready:
            for name, source in [
                ("check_layout", _CHECK_LAYOUT),
                ("insert", _INSERT),
                ("update", _UPDATE),
                ("delete", _DELETE),
                ("claim", _CLAIM),
                ("release", _RELEASE),
                ("list", _LIST),
            ]:
                self._scripts[name] = client.register_script(source)
            version = _text(
                await self._scripts["check_layout"](
                    keys=[self._key("v")], args=[LAYOUT_VERSION]
                )
            )
            if version != LAYOUT_VERSION:
                msg = (
                    f"Redis namespace {self._namespace!r} has key layout "
                    f"version {version!r}, this tether knows {LAYOUT_VERSION!r}; "
                    "upgrade tether or use another namespace"
                )
                raise ConfigError(msg)
            self._ready = True
        return client

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with self._errors(name):
            await self._redis(name)
            return await self._scripts[name](keys=keys, args=args)

    # -- records ---------------------------------------------------------------

    async def insert(
        self, session: Session, *, credential_limit: int | None = None
    ) -> Session:
        stored = attrs.evolve(session, version=1)
        # Sessions without a credential share no limit, as in MemoryStore.
        limit = -1
        if credential_limit is not None and session.credential is not None:
            limit = credential_limit
        live = stored.state.is_live and stored.credential is not None
        result = await self._script(
            "insert",
            keys=[
                self._key("s", session.id),
                self._live_key(stored),
                self._key("ids"),
                self._key("seq"),
            ],
            args=[session.id, _dumps(stored), "1" if live else "0", limit],
        )
        if result[0] == 1:
            msg = f"a session with id {session.id} exists already"
            raise SessionExistsError(
                msg, store=self._where, operation="insert", session_id=session.id
            )
        if result[0] == 2:  # noqa: PLR2004
            msg = (
                f"{session.provider}: the credential holds {result[1]} live "
                f"session(s), the limit is {credential_limit}"
            )
            raise AdmissionError(
                msg,
                provider=session.provider,
                credential=session.credential,
                limit=limit,
            )
        return stored

    async def update(self, session: Session, *, fence: int | None = None) -> Session:
        stored = attrs.evolve(session, version=session.version + 1)
        live = stored.state.is_live and stored.credential is not None
        result = await self._script(
            "update",
            keys=[
                self._key("s", session.id),
                self._key("token", session.id),
                self._live_key(stored),
            ],
            args=[
                session.id,
                _dumps(stored),
                "1" if live else "0",
                session.version,
                -1 if fence is None else fence,
            ],
        )
        code = result[0]
        if code == 1:
            raise SessionNotFoundError(
                f"no session {session.id}", session_id=session.id
            )
        if code == 2:  # noqa: PLR2004
            token = int(result[1])
            msg = f"session {session.id}: lease token {fence} was superseded by {token}"
            raise LeaseLostError(
                msg, session_id=session.id, expected=fence or 0, actual=token
            )
        if code == 3:  # noqa: PLR2004
            actual = int(result[1])
            msg = (
                f"session {session.id} changed since it was read "
                f"(version {session.version}, now {actual})"
            )
            raise StaleRecordError(
                msg, session_id=session.id, expected=session.version, actual=actual
            )
        return stored

    async def get(self, session_id: str) -> Session | None:
        with self._errors("get"):
            client = await self._redis("get")
            record = await client.hget(self._key("s", session_id), "json")
        if record is None:
            return None
        return decode(record, store=self._where, operation="get")

    async def list(
        self,
        *,
        provider: str | None = None,
        states: Sequence[SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Session]:
        records = await self._script(
            "list", keys=[self._key("ids")], args=[self._key("s", "")]
        )
        sessions = (decode(r, store=self._where, operation="list") for r in records)
        return [
            s
            for s in sessions
            if matches(s, provider=provider, states=states, labels=labels)
        ]

    async def delete(self, session_id: str) -> None:
        await self._script(
            "delete",
            keys=[
                self._key("s", session_id),
                self._key("lease", session_id),
                self._key("token", session_id),
                self._key("ids"),
            ],
            args=[session_id],
        )

    # -- leases ----------------------------------------------------------------

    async def claim(self, session_id: str, owner: str, ttl: float) -> int | None:
        if not owner:
            msg = "a lease owner is a non-empty name"
            raise ConfigError(msg)
        token = await self._script(
            "claim",
            keys=[self._key("lease", session_id), self._key("token", session_id)],
            # PX takes whole milliseconds, at least one.
            args=[owner, max(1, round(ttl * 1000))],
        )
        return None if int(token) < 0 else int(token)

    async def release(self, session_id: str, owner: str) -> None:
        await self._script(
            "release", keys=[self._key("lease", session_id)], args=[owner]
        )

    # -- lifetime --------------------------------------------------------------

    async def aclose(self) -> None:
        """
        Close the client, if the store built it from a URL.
        """
        self._closed = True
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            pool, self._pool = self._pool, None
            self._owns_client = False
            with self._errors("aclose"):
                await client.aclose()
                if pool is not None:
                    # A client given a pool leaves it open: we built it, we close it.
                    await pool.disconnect()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} namespace={self._namespace!r}>"
