"""
Stores: when the store fails, no message shows a Redis password.

The Redis store runs on asyncio only (redis-py's async client is built on it).
"""

import socket

import anyio

from tether.exceptions import StoreError, StoreUnavailableError
from tether.stores import open_store


def closed_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main() -> None:
    url = f"redis://:secret@127.0.0.1:{closed_port()}/0?socket_connect_timeout=5"
    store = open_store(url)
    try:
        await store.get("s1")
    except StoreUnavailableError as exc:
        # "get: cannot reach Redis at redis://127.0.0.1:PORT/0: ..."
        assert "cannot reach Redis" in str(exc)
        assert "secret" not in str(exc)
    except StoreError as exc:
        # "get: Redis refused the credentials at redis://...: ..."
        assert "secret" not in str(exc)
    else:
        raise AssertionError("nothing listens on that port")
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
