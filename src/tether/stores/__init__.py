"""
Durable and shared session stores, and :func:`open_store` to pick one by URL.

* :class:`~tether.MemoryStore` (``memory://``): one process, gone when it ends.
* :class:`SqliteStore` (``sqlite:///path``): a file, shared by the processes
  of one machine, surviving their crashes.
* :class:`RedisStore` (``redis://host:port/db``): shared by processes on many
  machines; watch managers share its sessions out by shard.

.. versionadded:: 0.1
"""

from __future__ import annotations

from tether.stores._open import open_store
from tether.stores._redis import RedisStore
from tether.stores._sqlite import SqliteStore


__all__ = ["RedisStore", "SqliteStore", "open_store"]
