"""
The synchronous facade: the async manager's behaviour from plain sync code.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tether import (
    ManagerStateError,
    MemoryStore,
    ProviderRegistry,
    RetryPolicy,
    SessionState,
)
from tether._sync import SyncSessionManager
from tether.exceptions import (
    InvalidParameterError,
    ProviderNotFoundError,
    SessionClosedError,
    SessionNotFoundError,
)
from tether.testing import FakeBackend, FakeProvider


@pytest.fixture(name="registry")
def _registry() -> ProviderRegistry:
    """
    A registry holding only the fake provider.
    """
    registry = ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    return registry


@pytest.fixture(name="backend")
def _backend() -> FakeBackend:
    """
    The fake service, shared by the test and the manager.
    """
    return FakeBackend()


@pytest.fixture(params=["asyncio", "trio"], name="loop")
def _loop(request: pytest.FixtureRequest) -> str:
    """
    The facade runs the manager on either event loop.
    """
    return str(request.param)


@pytest.fixture(name="manager")
def _manager(
    registry: ProviderRegistry, backend: FakeBackend, loop: str
) -> Iterator[SyncSessionManager]:
    """
    An open facade over a manager on the fake provider, retrying without waits.
    """
    with SyncSessionManager(
        backend=loop,  # type: ignore[arg-type]
        registry=registry,
        config={"fake": {"backend": backend}},
        retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        health_checks=False,
        environ={},
    ) as manager:
        yield manager


def test_lifecycle(manager: SyncSessionManager, backend: FakeBackend) -> None:
    """
    create, ping, update, renew, get, list and close work from sync code.
    """
    created = manager.create("fake", size=2, labels={"job": "7"}, lifetime=60)

    assert SessionState.ACTIVE == created.state
    assert {created.remote_id} == backend.live_ids()
    assert manager.ping(created).ok

    updated = manager.update(created, note="hi")

    assert "hi" == updated.data["params"]["note"]

    renewed = manager.renew(created.id, lifetime=600)

    assert renewed.expires_at is not None
    assert created.expires_at is not None
    assert renewed.expires_at > created.expires_at
    assert [created.id] == [s.id for s in manager.list(labels={"job": "7"})]
    assert [] == manager.list(provider="other")

    closed = manager.close(created)

    assert SessionState.CLOSED == closed.state
    assert SessionState.CLOSED == manager.get(created.id).state
    assert set() == backend.live_ids()


def test_session_block_closes(
    manager: SyncSessionManager, backend: FakeBackend
) -> None:
    """
    session() is a sync context manager that closes the session on exit, even on error.
    """
    with (
        pytest.raises(RuntimeError, match="boom"),
        manager.session("fake", size=1) as session,
    ):
        assert {session.remote_id} == backend.live_ids()
        raise RuntimeError("boom")

    assert set() == backend.live_ids()
    assert SessionState.CLOSED == manager.get(session.id).state


def test_errors_cross_the_thread_unchanged(manager: SyncSessionManager) -> None:
    """
    The async manager's exceptions reach the sync caller as they are.
    """
    with pytest.raises(InvalidParameterError) as excinfo:
        manager.create("fake", size=99)

    assert "size" == excinfo.value.field

    with pytest.raises(ProviderNotFoundError):
        manager.create("nope")
    with pytest.raises(SessionNotFoundError):
        manager.get("missing")

    session = manager.create("fake")
    manager.close(session)

    with pytest.raises(SessionClosedError):
        manager.ping(session)


def test_snapshot_and_attach(registry: ProviderRegistry, backend: FakeBackend) -> None:
    """
    snapshot() reads the manager's view; attach() adopts a session another kept.
    """
    store = MemoryStore()
    options: dict[str, Any] = {
        "registry": registry,
        "config": {"fake": {"backend": backend}},
        "store": store,
        "health_checks": False,
        "environ": {},
    }
    with SyncSessionManager(on_exit="keep", **options) as first:
        session = first.create("fake", lifetime=120)
        snapshot = first.snapshot()

        assert [session.id] == [s.id for s in snapshot.sessions]
        assert "fake" in snapshot.providers

    # A second facade on the same store, as another process would attach.
    with SyncSessionManager(**options) as second:
        assert [] == list(second.snapshot().sessions)

        attached = second.attach(session.id)

        assert session.id == attached.id
        assert [session.id] == [s.id for s in second.snapshot().sessions]

    # It joined the second manager's on_exit policy: closed.
    assert set() == backend.live_ids()


def test_reconcile(manager: SyncSessionManager, backend: FakeBackend) -> None:
    """
    reconcile() reports, then records, a session the service lost.
    """
    session = manager.create("fake")
    assert session.remote_id is not None
    backend.kill(session.remote_id)

    dry = manager.reconcile(dry_run=True)

    assert [("lost", session.id)] == [(a.kind, a.session_id) for a in dry.actions]
    assert SessionState.ACTIVE == manager.get(session.id).state

    manager.reconcile()

    assert SessionState.LOST == manager.get(session.id).state


def test_provider_specific_calls(
    manager: SyncSessionManager, backend: FakeBackend
) -> None:
    """
    Async provider methods run on the manager's loop through call().
    """
    session = manager.create("fake", size=3)
    fake = manager.provider("fake")
    remote = manager.call(fake.get, session)

    assert remote is not None
    assert session.remote_id == remote.id

    listed = manager.call(functools.partial(fake.list))

    assert [session.remote_id] == [r.id for r in listed]


def test_from_worker_threads(
    registry: ProviderRegistry, backend: FakeBackend, loop: str
) -> None:
    """
    A facade opened in a worker thread works, and several threads can share one.
    """
    results: list[str] = []
    errors: list[BaseException] = []

    def work(manager: SyncSessionManager) -> None:
        try:
            with manager.session("fake", size=1) as s:
                results.append(manager.ping(s).status.value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def owner() -> None:
        with SyncSessionManager(
            backend=loop,  # type: ignore[arg-type]
            registry=registry,
            config={"fake": {"backend": backend}},
            health_checks=False,
            environ={},
        ) as manager:
            threads = [threading.Thread(target=work, args=(manager,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join(20)

    assert [] == errors
    assert ["alive"] * 4 == results
    assert 4 == backend.calls["create"]
    assert set() == backend.live_ids()


def test_exit_closes_or_keeps(registry: ProviderRegistry, backend: FakeBackend) -> None:
    """
    on_exit behaves as in the async manager: "close" by default, "keep" on request.
    """
    options: dict[str, Any] = {
        "registry": registry,
        "config": {"fake": {"backend": backend}},
        "health_checks": False,
        "environ": {},
    }
    with SyncSessionManager(**options) as manager:
        closed_on_exit = manager.create("fake")

    assert closed_on_exit.remote_id not in backend.live_ids()

    with SyncSessionManager(on_exit="keep", **options) as manager:
        kept = manager.create("fake")

    assert {kept.remote_id} == backend.live_ids()


def test_misuse(registry: ProviderRegistry) -> None:
    """
    Calls outside the block, re-entry and a bad backend raise clear errors.
    """
    manager = SyncSessionManager(registry=registry, environ={})

    with pytest.raises(ManagerStateError, match="inside 'with'"):
        manager.list()

    with manager:
        pass

    with pytest.raises(ManagerStateError, match="closed"):
        manager.list()
    with pytest.raises(ManagerStateError, match="only once"), manager:
        pass
    with pytest.raises(ValueError, match="backend"):
        SyncSessionManager(backend="curio")  # type: ignore[arg-type]


def test_manager_errors_at_start_propagate(registry: ProviderRegistry) -> None:
    """
    A manager that cannot be built raises from the with statement, and leaves no thread.
    """
    before = threading.active_count()

    with (
        pytest.raises(ValueError, match="on_exit"),
        SyncSessionManager(registry=registry, on_exit="never"),
    ):
        pass  # pragma: no cover

    assert before == threading.active_count()
