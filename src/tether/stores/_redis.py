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

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
import sniffio

from tether._session import Session, SessionState
from tether._store import matches
from tether.exceptions import (
    AdmissionError,
    ConfigError,
    LeaseLostError,
    SessionNotFoundError,
    StaleRecordError,
)


if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


#: The key layout this tether reads and writes.
LAYOUT_VERSION: Final = "1"

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

    Args:
        url: A ``redis://`` (or ``rediss://``, ``unix://``) URL; the store owns
            the client it builds and closes it in ``aclose()``.
        client: An existing ``redis.asyncio.Redis`` instead of *url*; you
            own it, and close it yourself.
        namespace: Prefix of every key, so stores can share a database.

    Raises:
        ConfigError: On first use, when the namespace holds a key layout this
            tether does not know, or when run outside asyncio.

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
            # Builds a connection pool; nothing connects until first use.
            self._client = redis.asyncio.Redis.from_url(self._url)
            self._owns_client = True

    # -- plumbing ------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._namespace, *parts))

    def _live_key(self, session: Session) -> str:
        pc = json.dumps([session.provider, session.credential], separators=(",", ":"))
        return self._key("live", pc)

    async def _redis(self) -> Redis:
        _require_asyncio()
        if self._closed or self._client is None:
            msg = "the store is closed"
            raise RuntimeError(msg)
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
        await self._redis()
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
            raise ValueError(msg)
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
        client = await self._redis()
        record = await client.hget(self._key("s", session_id), "json")
        if record is None:
            return None
        return Session.from_dict(json.loads(record))

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
        sessions = (Session.from_dict(json.loads(r)) for r in records)
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
            self._owns_client = False
            await client.aclose()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        where = "client" if self._url is None else _safe_url(self._url)
        return f"<RedisStore {where} namespace={self._namespace!r}>"
