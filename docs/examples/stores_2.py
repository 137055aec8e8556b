"""
Stores: what every store guarantees.
"""

import tempfile

import anyio

import tether
from tether.exceptions import LeaseLostError
from tether.stores import open_store


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/tether.db")
        record = await store.insert(
            tether.Session(id="s1", provider="fake", state="active")
        )
        # Worker A's lease lapses at once (a TTL of 0); worker B takes it over.
        old = await store.claim("s1", "worker-a", 0.0)
        new = await store.claim("s1", "worker-b", 30.0)
        assert old is not None  # a fence: None if another worker held the lease
        assert new is not None
        assert new > old
        assert await store.claim("s1", "worker-a", 30.0) is None

        try:
            await store.update(record, fence=old)
        except LeaseLostError as exc:
            assert (exc.expected, exc.actual) == (old, new)
        else:
            raise AssertionError("a stale fence was accepted")
        stored = await store.update(record, fence=new)
        assert stored.version == 2
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main)
