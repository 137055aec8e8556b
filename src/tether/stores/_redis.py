"""
A store in Redis: shared by processes on many machines.

Key layout 2 (``ns`` is the namespace, ``tether`` by default)::

    ns:v                  the layout version ("2"); a "1" is upgraded in place,
                          any other value is refused
    ns:nshards            how many shards session ids hash into (fixed)
    ns:seq                a counter: each record's place in listings, and
                          each write's place in the change feed
    ns:ids                sorted set of every session id, scored by ns:seq
    ns:shard:<k>          set of the session ids in shard k
                          (crc32(id) % nshards)
    ns:changed:<k>        sorted set of the session ids in shard k, scored by
                          the seq of their last write: shard k's change feed
                          (a watch worker reads only its own shards' feeds)
    ns:s:<id>             hash: json (Session.to_dict()), version, live (the
                          live-set key the id is in, or "")
    ns:live:<pc>          set of the live session ids of one provider and
                          credential; <pc> is the JSON array [provider, credential]
    ns:lease:<id>         the lease owner, expiring with the lease (PX)
    ns:token:<id>         the session's last fencing token
    ns:fence              the counter every fencing token comes from
    ns:members            sorted set of the watch workers, scored by the
                          server time (ms) their membership lapses
    ns:shards             hash: shard -> "owner|token" (owner empty when free)

Every write is one Lua script, so admission, the version check and the fencing
check run atomically on the server. Lease deadlines use the server's clock.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.to_thread
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


#: The key layout this tether reads and writes.
LAYOUT_VERSION: Final = "2"

#: Shards a new namespace is split into, unless the store is told otherwise.
#: Fixed for the namespace's life: every worker must hash ids alike.
SHARDS: Final = 128

#: Connections a store built from a URL opens at most; a call beyond them
#: waits for one to come free. The URL's ``max_connections`` overrides it.
MAX_CONNECTIONS: Final = 50
#: Seconds a call waits for a free connection before failing with
#: StoreUnavailableError. The URL's ``timeout`` overrides it.
POOL_TIMEOUT: Final = 20.0
#: Seconds to establish a connection. The URL's ``socket_connect_timeout``
#: overrides it.
CONNECT_TIMEOUT: Final = 10.0

# Changed records one changes() call returns at most.
_CHANGES_BATCH: Final = 1000
# The prefix of a manager's liveness lease (tether._lifecycle.pools.owner_key).
_OWNER_KEY_PREFIX: Final = "tether.owner:"

# KEYS: layout version, shard count; ARGV: layout, shards wanted ("0": any),
# default shards. Returns {layout, shards}. A new namespace gets both; an old
# one keeps its own, for the caller to check.
_CHECK_LAYOUT: Final = """
local v = redis.call('GET', KEYS[1])
if not v then
    redis.call('SET', KEYS[1], ARGV[1])
    v = ARGV[1]
end
local n = redis.call('GET', KEYS[2])
if not n and v == ARGV[1] then
    n = ARGV[2]
    if n == '0' then
        n = ARGV[3]
    end
    redis.call('SET', KEYS[2], n)
end
return {v, n or ''}
"""

# KEYS: record, live set, ids, seq, shard set, shard's changed
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
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[6], seq, ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
return {0}
"""

# The fencing token of a shard, from its field in the shards hash
# ("owner|token"; owner empty once released).
_SHARD_FENCE: Final = """
local function shard_token(hash, shard)
    local held = redis.call('HGET', hash, shard)
    if not held then
        return 0
    end
    return tonumber(string.match(held, '|(%d+)$'))
end
"""

# KEYS: record, token, live set of the new record, shards, shard's changed, seq
# ARGV: id, json, live ("1"/"0"), expected version, fence (-1: none), shard
# Returns {0} stored, {1} no record, {2, token} fenced off, {3, version} stale.
# The fence is checked against the session's own token and its shard's: the
# newest lease on either wins. The old live set's key is read from the
# record: a standalone Redis (or one behind Sentinel) only, not Redis Cluster.
_UPDATE: Final = (
    _SHARD_FENCE
    + """
local current = redis.call('HMGET', KEYS[1], 'version', 'live')
if not current[1] then
    return {1}
end
local fence = tonumber(ARGV[5])
if fence >= 0 then
    local token = tonumber(redis.call('GET', KEYS[2]) or '0')
    local shard = shard_token(KEYS[4], ARGV[6])
    if shard > token then
        token = shard
    end
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
redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), ARGV[1])
return {0}
"""
)

# KEYS: record, lease, token, ids, shard set, shard's changed; ARGV: id
_DELETE: Final = """
local live = redis.call('HGET', KEYS[1], 'live')
if live and live ~= '' then
    redis.call('SREM', live, ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return 0
"""

# The server's clock in milliseconds.
_NOW: Final = """
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# A token larger than every one issued in the namespace, and than *floor*.
_NEXT_FENCE: Final = """
local function next_token(counter, floor)
    local token = redis.call('INCR', counter)
    if token <= floor then
        token = floor + 1
        redis.call('SET', counter, token)
    end
    return token
end
"""

# KEYS: lease, token, fence counter, shards, members
# ARGV: owner, ttl in milliseconds, shard
# Returns the fencing token, or -1 when another owner's lease is live: the
# session's own, or its shard's (a live watch worker owns the shard).
_CLAIM: Final = (
    _NOW
    + _NEXT_FENCE
    + """
local shard = redis.call('HGET', KEYS[4], ARGV[3])
if shard then
    local owner = string.match(shard, '^(.*)|')
    if owner ~= '' and owner ~= ARGV[1] then
        local until_ms = redis.call('ZSCORE', KEYS[5], owner)
        if until_ms and tonumber(until_ms) > now_ms() then
            return -1
        end
    end
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    return -1
end
local token
if holder then
    token = tonumber(redis.call('GET', KEYS[2]) or '0')
end
if not token or token == 0 then
    token = next_token(KEYS[3], tonumber(redis.call('GET', KEYS[2]) or '0'))
    redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
"""
)

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

# KEYS: members (zset: owner -> deadline, server ms), shards (hash: shard ->
# "owner|token"), fence counter
# ARGV: owner, ttl in milliseconds, shard count, leave ("1"/"0")
# Renews the owner's membership; drops members whose deadline passed; gives
# up shards beyond the owner's fair share and takes free ones (unowned, or
# owned by a member that is gone) up to it, each with a new fencing token.
# Members sorted by name each get floor(n / members) shards, the first
# n % members one more, so every live member computes the same shares.
# Returns {shard, token, ...}: the shards the owner holds now.
_HEARTBEAT: Final = (
    _NOW
    + _NEXT_FENCE
    + """
local now = now_ms()
local owner = ARGV[1]
local n = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local fields = redis.call('HGETALL', KEYS[2])
local held = {}
for i = 1, #fields, 2 do
    held[tonumber(fields[i])] = fields[i + 1]
end
local writes = {}
if ARGV[4] == '1' then
    redis.call('ZREM', KEYS[1], owner)
    for k = 0, n - 1 do
        local v = held[k]
        if v then
            local o, token = string.match(v, '^(.*)|(%d+)$')
            if o == owner then
                writes[#writes + 1] = k
                writes[#writes + 1] = '|' .. token
            end
        end
    end
    if #writes > 0 then
        redis.call('HSET', KEYS[2], unpack(writes))
    end
    return {}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), owner)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local live, index = {}, 0
for i, m in ipairs(members) do
    live[m] = true
    if m == owner then
        index = i
    end
end
local quota = math.floor(n / #members)
if index <= n % #members then
    quota = quota + 1
end
local mine, free = {}, {}
for k = 0, n - 1 do
    local v = held[k]
    if v then
        local o, token = string.match(v, '^(.*)|(%d+)$')
        if o == owner then
            mine[#mine + 1] = {k, tonumber(token)}
        elseif o == '' or not live[o] then
            free[#free + 1] = {k, tonumber(token)}
        end
    else
        free[#free + 1] = {k, 0}
    end
end
while #mine > quota do
    local s = table.remove(mine)
    writes[#writes + 1] = s[1]
    writes[#writes + 1] = '|' .. s[2]
end
local i = 1
while #mine < quota and i <= #free do
    local s = free[i]
    i = i + 1
    local token = next_token(KEYS[3], s[2])
    mine[#mine + 1] = {s[1], token}
    writes[#writes + 1] = s[1]
    writes[#writes + 1] = owner .. '|' .. token
end
if #writes > 0 then
    redis.call('HSET', KEYS[2], unpack(writes))
end
local out = {}
for _, s in ipairs(mine) do
    out[#out + 1] = s[1]
    out[#out + 1] = s[2]
end
return out
"""
)

# KEYS: shard sets; ARGV: record key prefix. The records of those shards.
_SHARD: Final = """
local out = {}
for _, key in ipairs(KEYS) do
    for _, id in ipairs(redis.call('SMEMBERS', key)) do
        local record = redis.call('HGET', ARGV[1] .. id, 'json')
        if record then
            out[#out + 1] = record
        end
    end
end
return out
"""

# KEYS: seq, then the changed zsets of the shards asked for (id -> the seq of
# its last write; seqs are unique across shards)
# ARGV: cursor (a seq; "-1": only the current one), record key prefix, limit
# Returns {cursor, json, ...}: the records written after the cursor, oldest
# write first (at most limit of them), and the cursor to ask from next.
#
# Each shard gives its first limit entries after the cursor; merged by seq,
# the first limit of them are the first limit of all, since a shard cut at
# its limit gave limit entries below its cut. So: at least limit entries, and
# the batch ends at the limit-th (everything up to it delivered, the rest
# next call); fewer, and no shard was cut: every entry up to the current seq
# is delivered, and the cursor moves there.
_CHANGES: Final = """
local seq = redis.call('GET', KEYS[1]) or '0'
if ARGV[1] == '-1' then
    return {seq}
end
local limit = tonumber(ARGV[3])
local after = '(' .. ARGV[1]
local found = {}
for i = 2, #KEYS do
    local ids = redis.call(
        'ZRANGEBYSCORE', KEYS[i], after, '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
    for j = 1, #ids, 2 do
        found[#found + 1] = {tonumber(ids[j + 1]), ids[j], ids[j + 1]}
    end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {seq}
local n = #found
if n >= limit then
    n = limit
    out[1] = found[limit][3]
end
for i = 1, n do
    local record = redis.call('HGET', ARGV[2] .. found[i][2], 'json')
    if record then
        out[#out + 1] = record
    end
end
return out
"""

_SCRIPTS: Final = {
    "check_layout": _CHECK_LAYOUT,
    "insert": _INSERT,
    "update": _UPDATE,
    "delete": _DELETE,
    "claim": _CLAIM,
    "release": _RELEASE,
    "list": _LIST,
    "heartbeat": _HEARTBEAT,
    "shard": _SHARD,
    "changes": _CHANGES,
}


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


def shard_of(session_id: str, shards: int) -> int:
    """
    The shard of *session_id* among *shards*: the same in every process.
    """
    return zlib.crc32(session_id.encode()) % shards


def _library() -> str | None:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


@attrs.define
class RedisStore:
    """
    Session records in Redis, shared by processes on many machines.

    Admission, the optimistic version check, fencing and lease claims each run
    as one Lua script, atomically on the server. Leases expire by the server's
    clock, so the processes sharing a store need no agreement on time.

    Session ids hash into a fixed number of shards (128 for a new namespace,
    or *shards*); watch-mode managers share the shards out among themselves
    (see :doc:`/scale`), so steady background pings cost Redis nothing.

    Under asyncio it uses redis-py's async client; under trio (or any other
    anyio backend) redis-py's sync client in anyio worker threads, one thread
    per pooled connection at most.

    Built from a URL, the store owns a blocking connection pool: at most 50
    connections (the URL's ``max_connections``), and a call beyond them waits
    up to 20 seconds (the URL's ``timeout``) for one to come free, so any
    number of concurrent calls is served by a bounded number of connections.

    Args:
        url: A ``redis://`` (or ``rediss://``, ``unix://``) URL; the store owns
            the client it builds and closes it in ``aclose()``.
        client: An existing ``redis.asyncio.Redis`` instead of *url*; you
            own it (and its pool's limits), and close it yourself. It needs
            asyncio: under trio, give a *url*.
        namespace: Prefix of every key, so stores can share a database.
        shards: The shard count of a new namespace; an existing namespace
            keeps its own, and a different number here is refused.

    Raises:
        ConfigError: On first use, when the namespace holds a key layout this
            tether does not know or another shard count, or when a given
            asyncio client is used outside asyncio.
        StoreUnavailableError: From any method, when Redis cannot be reached,
            times out, or no pooled connection comes free in time.
        StoreError: From any method, when Redis refuses the credentials or
            fails a command. The message and repr never show the password.

    .. versionadded:: 0.1
    .. versionchanged:: Unreleased
       Shards, the change feed and trio support; key layout 2 (a layout 1
       namespace is upgraded in place on first use).
    """

    _url: str | None = attrs.field(default=None, alias="url")
    _client: Redis | None = attrs.field(
        default=None, alias="client", kw_only=True, repr=False
    )
    _namespace: str = attrs.field(default="tether", alias="namespace", kw_only=True)
    _wanted_shards: int | None = attrs.field(default=None, alias="shards", kw_only=True)
    _owns_client: bool = attrs.field(default=False, init=False)
    _ready: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _scripts: dict[str, Any] = attrs.field(factory=dict, init=False)
    _pool: BlockingConnectionPool | None = attrs.field(default=None, init=False)
    _where: str = attrs.field(default="", init=False)
    _shards: int = attrs.field(default=0, init=False)
    # Under trio: redis-py's sync client, used from worker threads.
    _threaded: bool = attrs.field(default=False, init=False)
    _sync: Any = attrs.field(default=None, init=False, repr=False)
    _limiter: anyio.CapacityLimiter | None = attrs.field(default=None, init=False)
    _threads: anyio.CapacityLimiter | None = attrs.field(default=None, init=False)
    _pool_timeout: float | None = attrs.field(default=None, init=False)
    # Records one changes() call returns at most (tests make it small).
    _changes_batch: int = attrs.field(default=_CHANGES_BATCH, init=False)

    def __attrs_post_init__(self) -> None:
        if (self._url is None) == (self._client is None):
            msg = "RedisStore takes a url or a client, and not both"
            raise ConfigError(msg)
        if not self._namespace or ":" in self._namespace:
            msg = (
                f"a namespace is a non-empty name without ':', not {self._namespace!r}"
            )
            raise ConfigError(msg)
        shards: object = self._wanted_shards  # untyped callers get a typed error
        if shards is not None and (
            not isinstance(shards, int) or isinstance(shards, bool) or shards < 1
        ):
            msg = f"shards is a whole number of at least 1, not {shards!r}"
            raise ConfigError(msg)
        if self._client is None:
            try:
                import redis  # noqa: PLC0415, F401
            except ImportError as exc:
                msg = "RedisStore needs redis-py: install tether[redis]"
                raise ConfigError(msg) from exc
            self._owns_client = True
        self._where = (
            _describe_client(self._client)
            if self._client is not None
            else _safe_url(self._url or "")
        )

    # -- plumbing ------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._namespace, *parts))

    def _live_key(self, session: Session) -> str:
        return self._live_key_of(session.provider, session.credential)

    def _live_key_of(self, provider: str, credential: str | None) -> str:
        pc = json.dumps([provider, credential], separators=(",", ":"))
        return self._key("live", pc)

    def _shard_key(self, session_id: str) -> str:
        return self._key("shard", str(shard_of(session_id, self._shards)))

    def _changed_key(self, session_id: str) -> str:
        return self._key("changed", str(shard_of(session_id, self._shards)))

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

    def _connect(self, operation: str) -> None:
        # The first call picks the client for the event loop it runs on.
        library = _library()
        if self._owns_client and self._client is None and self._sync is None:
            if library == "asyncio":
                import redis.asyncio  # noqa: PLC0415

                # redis-py's default pool raises MaxConnectionsError past its
                # limit; a blocking one makes the excess calls wait. Nothing
                # connects until first use. Options in the URL win.
                self._pool = redis.asyncio.BlockingConnectionPool.from_url(
                    self._url or "",
                    max_connections=MAX_CONNECTIONS,
                    timeout=POOL_TIMEOUT,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                )
                self._client = redis.asyncio.Redis(connection_pool=self._pool)
            else:
                import redis  # noqa: PLC0415

                pool = redis.BlockingConnectionPool.from_url(
                    self._url or "",
                    max_connections=MAX_CONNECTIONS,
                    timeout=POOL_TIMEOUT,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                )
                self._sync = redis.Redis(connection_pool=pool)
                self._threaded = True
                # A thread per pooled connection at most: more would only wait.
                # Calls wait for a thread as long as the pool would have them
                # wait for a connection; the threads then never wait.
                self._limiter = anyio.CapacityLimiter(pool.max_connections)
                self._threads = anyio.CapacityLimiter(pool.max_connections)
                self._pool_timeout = pool.timeout
        elif library != "asyncio" and not self._threaded:
            msg = (
                f"{operation}: a redis.asyncio client needs asyncio, but runs "
                f"under {library or 'no event loop'}: give RedisStore a url "
                "instead, and it uses redis-py's sync client in worker threads"
            )
            raise ConfigError(msg)

    async def _on(self, fn: Callable[[Any], Any]) -> Any:
        # fn(client): an awaitable from the asyncio client, a value from the
        # sync one (redis-py's two clients take the same calls).
        if self._threaded:
            assert self._limiter is not None  # noqa: S101
            await self._take_thread(self._limiter)
            try:
                return await anyio.to_thread.run_sync(
                    fn, self._sync, limiter=self._threads
                )
            finally:
                self._limiter.release()
        return await fn(self._client)

    async def _take_thread(self, limiter: anyio.CapacityLimiter) -> None:
        # As redis-py's blocking pool does under asyncio: wait up to the
        # pool's timeout (None: for ever), then fail as it fails.
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            pass
        else:
            return
        with anyio.move_on_after(self._pool_timeout) as waited:
            await limiter.acquire()
        if waited.cancelled_caught:
            import redis.exceptions  # noqa: PLC0415

            msg = "No connection available."
            raise redis.exceptions.ConnectionError(msg)

    async def _prepare(self, operation: str) -> None:
        if self._closed:
            msg = f"{operation}: the store is closed"
            raise StoreClosedError(msg, store=self._where, operation=operation)
        self._connect(operation)
        if self._ready:
            return
        client = self._sync if self._threaded else self._client
        assert client is not None  # noqa: S101
        for name, source in _SCRIPTS.items():
            self._scripts[name] = client.register_script(source)
        wanted = self._wanted_shards or 0
        layout, shards = await self._run_script(
            "check_layout",
            [self._key("v"), self._key("nshards")],
            [LAYOUT_VERSION, wanted, SHARDS],
        )
        layout = _text(layout)
        if layout == "1":
            shards = await self._upgrade(wanted or SHARDS)
        elif layout != LAYOUT_VERSION:
            msg = (
                f"Redis namespace {self._namespace!r} has key layout "
                f"version {layout!r}, this tether knows {LAYOUT_VERSION!r}; "
                "upgrade tether or use another namespace"
            )
            raise ConfigError(msg)
        count = int(_text(shards))
        if wanted and wanted != count:
            msg = (
                f"Redis namespace {self._namespace!r} has {count} shards, "
                f"not {wanted}: a namespace's shard count is fixed when it is "
                "made; leave shards unset to use it"
            )
            raise ConfigError(msg)
        self._shards = count
        self._ready = True

    async def _upgrade(self, shards: int) -> int:
        # Layout 1 had no shard sets and no change feeds: build them from the
        # ids (stop layout 1 writers first; this runs once per namespace).
        ids = await self._on(
            lambda c: c.zrange(self._key("ids"), 0, -1, withscores=True)
        )
        self._shards = shards

        def build(c: Any) -> Any:
            pipe = c.pipeline(transaction=True)
            for raw, seq in ids:
                sid = _text(raw)
                pipe.sadd(self._shard_key(sid), sid)
                pipe.zadd(self._changed_key(sid), {sid: seq})
            pipe.set(self._key("nshards"), shards)
            pipe.set(self._key("v"), LAYOUT_VERSION)
            return pipe.execute()

        await self._on(build)
        return shards

    async def _run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts[name]
        return await self._on(lambda c: script(keys=keys, args=args, client=c))

    async def _script(
        self, name: str, build: Callable[[], tuple[list[str], list[Any]]]
    ) -> Any:
        # build() runs once the store is ready (it may need the shard count).
        with self._errors(name):
            await self._prepare(name)
            keys, args = build()
            return await self._run_script(name, keys, args)

    async def _redis(self, operation: str) -> Any:
        """
        The client, ready for use (the asyncio client, or the sync one under trio).
        """
        with self._errors(operation):
            await self._prepare(operation)
        return self._sync if self._threaded else self._client

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
            lambda: (
                [
                    self._key("s", session.id),
                    self._live_key(stored),
                    self._key("ids"),
                    self._key("seq"),
                    self._shard_key(session.id),
                    self._changed_key(session.id),
                ],
                [session.id, _dumps(stored), "1" if live else "0", limit],
            ),
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
            lambda: (
                [
                    self._key("s", session.id),
                    self._key("token", session.id),
                    self._live_key(stored),
                    self._key("shards"),
                    self._changed_key(session.id),
                    self._key("seq"),
                ],
                [
                    session.id,
                    _dumps(stored),
                    "1" if live else "0",
                    session.version,
                    -1 if fence is None else fence,
                    shard_of(session.id, self._shards),
                ],
            ),
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
            await self._prepare("get")
            key = self._key("s", session_id)
            record = await self._on(lambda c: c.hget(key, "json"))
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
            "list", lambda: ([self._key("ids")], [self._key("s", "")])
        )
        sessions = (decode(r, store=self._where, operation="list") for r in records)
        return [
            s
            for s in sessions
            if matches(s, provider=provider, states=states, labels=labels)
        ]

    async def count_live(self, provider: str, credential: str) -> int:
        """
        How many live sessions of *provider* hold *credential*: the size of
        the set admission counts (one ``SCARD``, whatever the namespace holds).

        .. versionadded:: Unreleased
        """
        with self._errors("count_live"):
            await self._prepare("count_live")
            key = self._live_key_of(provider, credential)
            return int(await self._on(lambda c: c.scard(key)))

    async def delete(self, session_id: str) -> None:
        await self._script(
            "delete",
            lambda: (
                [
                    self._key("s", session_id),
                    self._key("lease", session_id),
                    self._key("token", session_id),
                    self._key("ids"),
                    self._shard_key(session_id),
                    self._changed_key(session_id),
                ],
                [session_id],
            ),
        )

    # -- leases ----------------------------------------------------------------

    async def claim(self, session_id: str, owner: str, ttl: float) -> int | None:
        if not owner:
            msg = "a lease owner is a non-empty name"
            raise ConfigError(msg)
        token = await self._script(
            "claim",
            lambda: (
                [
                    self._key("lease", session_id),
                    self._key("token", session_id),
                    self._key("fence"),
                    self._key("shards"),
                    self._key("members"),
                ],
                # PX takes whole milliseconds, at least one.
                [owner, max(1, round(ttl * 1000)), self._claim_shard(session_id)],
            ),
        )
        return None if int(token) < 0 else int(token)

    def _claim_shard(self, session_id: str) -> str | int:
        # A manager's liveness lease (its pools') names no session: no shard's
        # worker stands in for it.
        if session_id.startswith(_OWNER_KEY_PREFIX):
            return ""
        return shard_of(session_id, self._shards)

    async def release(self, session_id: str, owner: str) -> None:
        await self._script(
            "release", lambda: ([self._key("lease", session_id)], [owner])
        )

    # -- shards ----------------------------------------------------------------

    async def shard_count(self) -> int:
        """
        How many shards the namespace's session ids hash into.

        .. versionadded:: Unreleased
        """
        with self._errors("shard_count"):
            await self._prepare("shard_count")
        return self._shards

    def shard_of(self, session_id: str) -> int:
        """
        The shard of *session_id* (once the store has been used).

        .. versionadded:: Unreleased
        """
        if not self._ready:
            msg = "shard_of: use the store first (await shard_count())"
            raise ConfigError(msg)
        return shard_of(session_id, self._shards)

    async def heartbeat(
        self, owner: str, ttl: float, *, leave: bool = False
    ) -> dict[int, int]:
        """
        Renew *owner*'s membership and rebalance its shards, in one round trip.

        Members are the owners whose last heartbeat is under *ttl* old (by the
        server's clock). Each gets an even share of the shards (within one);
        an owner above its share gives up the excess, one below it takes
        shards nobody live owns, each with a fencing token larger than any
        issued before, so the writes of a shard's previous owner are refused.

        Args:
            owner: The worker's name.
            ttl: Seconds the membership (and so its shards) lasts unrenewed.
            leave: Give up every shard and the membership instead.

        Returns:
            The shards *owner* holds now, each with its fencing token.

        .. versionadded:: Unreleased
        """
        if not owner or "|" in owner:
            msg = f"a shard owner is a non-empty name without '|', not {owner!r}"
            raise ConfigError(msg)
        flat = await self._script(
            "heartbeat",
            lambda: (
                [self._key("members"), self._key("shards"), self._key("fence")],
                [owner, max(1, round(ttl * 1000)), self._shards, int(leave)],
            ),
        )
        return {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def shard_sessions(self, *shards: int) -> builtins.list[Session]:
        """
        Every record in the shards given, in one round trip.

        Args:
            shards: The shards to read (none: no records, no round trip).

        .. versionadded:: Unreleased
        """
        if not shards:
            return []
        records = await self._script(
            "shard",
            lambda: (
                [self._key("shard", str(k)) for k in self._checked(shards)],
                [self._key("s", "")],
            ),
        )
        return [
            decode(r, store=self._where, operation="shard_sessions") for r in records
        ]

    async def changes(
        self, cursor: int | None, *, shards: Iterable[int] | None = None
    ) -> tuple[int, builtins.list[Session]]:
        """
        The records written (inserted or updated) after *cursor*.

        Args:
            cursor: What the previous call returned; ``None`` for none yet,
                to learn where the feed is now (no records then).
            shards: Only the records of these shards (each shard keeps its
                own feed, so the others cost nothing); every shard when
                ``None``. Pass the same cursor whichever shards you ask for:
                it is one sequence across the namespace.

        Returns:
            The cursor to pass next, and up to 1,000 records, oldest write
            first; a record written more than once since shows once, as it
            is now. Deleted records do not show. Every write to those shards
            up to the returned cursor has been delivered: a call that returns
            no records has delivered them all.

        .. versionadded:: Unreleased
        .. versionchanged:: Unreleased
           *shards*.
        """

        def build() -> tuple[list[str], list[Any]]:
            wanted = range(self._shards) if shards is None else self._checked(shards)
            return (
                [self._key("seq"), *(self._key("changed", str(k)) for k in wanted)],
                [
                    -1 if cursor is None else cursor,
                    self._key("s", ""),
                    self._changes_batch,
                ],
            )

        out = await self._script("changes", build)
        return int(float(_text(out[0]))), [
            decode(r, store=self._where, operation="changes") for r in out[1:]
        ]

    def _checked(self, shards: Iterable[int]) -> builtins.list[int]:
        # Each shard once, and one the namespace has: a typo must not read
        # (or wait on) a key nobody writes.
        wanted = sorted(set(shards))
        bad = [k for k in wanted if not 0 <= k < self._shards]
        if bad:
            msg = (
                f"no shard {bad[0]!r}: the namespace has {self._shards} "
                f"(0 to {self._shards - 1})"
            )
            raise ConfigError(msg)
        return wanted

    # -- lifetime --------------------------------------------------------------

    async def aclose(self) -> None:
        """
        Close the client, if the store built it from a URL.
        """
        self._closed = True
        if not self._owns_client:
            return
        self._owns_client = False
        if self._client is not None:
            client, self._client = self._client, None
            pool, self._pool = self._pool, None
            with self._errors("aclose"):
                await client.aclose()
                if pool is not None:
                    # A client given a pool leaves it open: we built it, we close it.
                    await pool.disconnect()
        if self._sync is not None:
            sync, self._sync = self._sync, None

            def close() -> None:
                sync.close()
                sync.connection_pool.disconnect()

            with self._errors("aclose"):
                await anyio.to_thread.run_sync(close, limiter=self._limiter)

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} namespace={self._namespace!r}>"
