"""
The local handle from synchronous code: ``SyncSessionManager.session``.
"""

from __future__ import annotations

import pytest

import tether
from tether_local import LocalProvider, SyncLocalHandle

from .conftest import NO_BWRAP, session_processes


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_sync_handle_executes_and_is_refused_after_its_block(
    loop: str, dirs: dict[str, str]
) -> None:
    """
    The with-block gets a SyncLocalHandle whose blocking ``execute`` keeps
    state; afterwards it refuses, and the session's processes are gone.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("local", LocalProvider)
    isolation = "none" if NO_BWRAP else "bwrap"
    with tether.SyncSessionManager(
        backend=loop,  # type: ignore[arg-type]
        registry=registry,
        config={"local": dirs},
        health_checks=False,
        environ={},
    ) as manager:
        with manager.session(LocalProvider, isolation=isolation) as sb:
            assert isinstance(sb, SyncLocalHandle)
            sb.execute("word = 'sync'")
            out = sb.execute("print(word)")
            remote_id = sb.remote_id
            assert remote_id is not None
            running = session_processes(remote_id)
        with pytest.raises(tether.SessionEndedError):
            sb.execute("print(1)")

    assert "sync\n" == out.stdout
    assert running
    assert [] == session_processes(remote_id)
