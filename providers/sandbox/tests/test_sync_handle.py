"""
The sandbox handle from synchronous code: ``SyncSessionManager.session``,
``handle``, ``connect`` and ``search``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

import tether
from tether.testing import ASGIServer, serve_asgi
from tether_sandbox import Execution, SandboxProvider, SyncSandboxHandle
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


@pytest.fixture(params=["asyncio", "trio"], name="loop")
def _loop(request: pytest.FixtureRequest) -> str:
    """
    The facade runs the manager on either event loop.
    """
    return str(request.param)


@pytest.fixture(name="emulator")
def _emulator() -> SandboxEmulator:
    return SandboxEmulator(api_keys=(KEY,))


@pytest.fixture(name="served")
def _served(
    loop: str, emulator: SandboxEmulator
) -> Iterator[tuple[tether.SyncSessionManager, ASGIServer]]:
    """
    A sync manager for the sandbox, and the emulator it talks to on a real
    socket (served on the manager's own event loop).
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(tether.SyncSessionManager(backend=loop))  # type: ignore[arg-type]
        server = stack.enter_context(
            probe.portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        manager = stack.enter_context(
            tether.SyncSessionManager(
                portal=probe.portal,
                registry=registry,
                config={"sandbox": {"base_url": server.url, "api_key": KEY}},
                health_checks=False,
                environ={},
            )
        )
        yield manager, server


def test_a_sync_handle_executes_and_is_refused_after_its_block(
    served: tuple[tether.SyncSessionManager, ASGIServer], emulator: SandboxEmulator
) -> None:
    """
    The with-block gets a SyncSandboxHandle whose blocking ``execute``
    returns the output; afterwards it refuses, and the VM is gone.
    """
    manager, _ = served
    with manager.session(SandboxProvider) as sb:
        assert isinstance(sb, SyncSandboxHandle)
        out = sb.execute("print('sync')")
        assert tether.SessionState.ACTIVE == sb.state
        remote = sb.remote_id
        assert remote in emulator.live_sessions()
        assert manager.ping(sb).ok
    with pytest.raises(tether.SessionEndedError):
        sb.execute("print(1)")

    assert "sync" in out.stdout
    assert remote not in emulator.live_sessions()


def test_a_sync_handle_starts_polls_and_waits_for_an_execution(
    served: tuple[tether.SyncSessionManager, ASGIServer], emulator: SandboxEmulator
) -> None:
    """
    ``execute_async``, ``execution`` and ``wait`` block and return what the
    async handle does; after the block they refuse before sending anything.
    """
    manager, server = served
    emulator.async_polls = 2
    with manager.session(SandboxProvider) as sb:
        sb.execute("x = 5")
        task_id = sb.execute_async("print(x)")
        first = sb.execution(task_id)
        out = sb.wait(task_id, poll_interval=0.01)
    sent = len(server.requests)
    with pytest.raises(tether.SessionEndedError):
        sb.execute_async("print(1)")
    with pytest.raises(tether.SessionEndedError):
        sb.wait(task_id)

    assert isinstance(first, Execution)
    assert not first.is_complete
    assert "5" in out.stdout
    assert sent == len(server.requests)


def test_sync_handle_connect_and_search(
    served: tuple[tether.SyncSessionManager, ASGIServer], emulator: SandboxEmulator
) -> None:
    """
    ``handle`` wraps a created session (by record or id) in the provider's
    blocking handle; ``connect`` takes over a session tether did not create
    and returns its handle (or, by name, the session); ``search`` asks the
    service, which filters by labels.
    """
    manager, server = served
    made = manager.create("sandbox", labels={"job": "1"})
    manager.create("sandbox", labels={"job": "2"})
    by_record = manager.handle(made)
    by_id = manager.handle(made.id)
    out = by_id.execute("print('handled')")

    raw = httpx.post(
        f"{server.url}/v1/sessions/session",
        json={"api_key": KEY, "vm_lifetime_seconds": 600},
        headers={"X-API-Key": KEY},
    )
    remote_id = raw.json()["session_id"]
    connected = manager.connect(SandboxProvider, remote_id, labels={"by": "hand"})
    hi = connected.execute("print('hi')")
    with pytest.raises(tether.RemoteNotFoundError):
        manager.connect("sandbox", "00000000-0000-4000-8000-000000000000")
    found = manager.search(SandboxProvider, labels={"job": "1"})
    manager.close(connected)

    assert isinstance(by_record, SyncSandboxHandle)
    assert isinstance(by_id, SyncSandboxHandle)
    assert made.id == by_record.id == by_id.id
    assert "handled" in out.stdout
    assert isinstance(connected, SyncSandboxHandle)
    assert "hi" in hi.stdout
    assert (remote_id, {"by": "hand"}) == (connected.remote_id, dict(connected.labels))
    assert tether.SessionState.CLOSED == connected.state
    assert remote_id not in emulator.live_sessions()
    assert [made.remote_id] == [r.id for r in found]
