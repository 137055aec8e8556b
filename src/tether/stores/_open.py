"""
Stores by URL, for configuration files and environment variables.
"""

from __future__ import annotations

import urllib.parse

from tether._store import MemoryStore
from tether.abc import Store
from tether.exceptions import ConfigError
from tether.stores._redis import RedisStore, _safe_url
from tether.stores._sqlite import SqliteStore


_SCHEMES = "memory://, sqlite:///path, redis://host:port/db (or rediss://)"


def open_store(url: str) -> Store:
    """
    The store a URL names.

    * ``memory://``: a new :class:`~tether.MemoryStore`.
    * ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: a
      :class:`SqliteStore` (three slashes, then the path). Takes the query
      parameter ``busy_timeout`` (seconds).
    * ``redis://[:password@]host:port/db`` or ``rediss://...``: a
      :class:`RedisStore`. The query parameter ``namespace`` sets the key prefix;
      other parameters go to redis-py (e.g. ``socket_timeout``).

    Nothing connects until the store is first used.

    Raises:
        ConfigError: The scheme is not one of these, or the URL is malformed.

    .. versionadded:: 0.1
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            msg = f"a memory store URL is just 'memory://', not {url!r}"
            raise ConfigError(msg)
        return MemoryStore()
    if scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            msg = (
                f"a SQLite store URL is sqlite:///relative/path or "
                f"sqlite:////absolute/path, not {url!r}"
            )
            raise ConfigError(msg)
        unknown = set(query) - {"busy_timeout"}
        if unknown:
            msg = f"sqlite:/// URLs take only busy_timeout, not {min(unknown)!r}"
            raise ConfigError(msg)
        path = urllib.parse.unquote(parts.path[1:])
        if "busy_timeout" not in query:
            return SqliteStore(path)
        try:
            busy_timeout = float(query["busy_timeout"][-1])
        except ValueError:
            msg = f"busy_timeout is a number of seconds, not {query['busy_timeout'][-1]!r}"
            raise ConfigError(msg) from None
        return SqliteStore(path, busy_timeout=busy_timeout)
    if scheme in {"redis", "rediss"}:
        namespace = query.pop("namespace", ["tether"])[-1]
        rest = urllib.parse.urlencode(query, doseq=True)
        client_url = urllib.parse.urlunsplit(parts._replace(query=rest))
        try:
            return RedisStore(client_url, namespace=namespace)
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            # redis-py's own complaint about the URL; it may quote the password.
            msg = f"{_safe_url(url)} is not a valid Redis URL"
            raise ConfigError(msg) from None
    msg = f"no store for {_safe_url(url)!r}: the supported URLs are {_SCHEMES}"
    raise ConfigError(msg)
