"""
Stores: configuration by URL.
"""

import tempfile
from pathlib import Path

import anyio

import tether
from tether.stores import RedisStore, open_store


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'tether.db'}"  # an absolute path: 4 slashes
        async with tether.SessionManager(store=url) as m:
            assert await m.list() == []

    # Opening a store connects to nothing; the first operation does.
    store = open_store("redis://:secret@cache.internal:6379/2?namespace=app1")
    assert isinstance(store, RedisStore)
    assert "secret" not in repr(store)
    await store.aclose()


if __name__ == "__main__":
    anyio.run(main)
