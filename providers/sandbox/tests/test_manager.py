"""
The sandbox provider through tether's SessionManager, against the emulator on
a real socket, with one manual clock shared by manager and emulator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

import tether
from tether import HealthStatus, SessionState
from tether.exceptions import InvalidParameterError, NotSupportedError
from tether.testing import ASGIServer, Fault, ManualClock
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


if TYPE_CHECKING:
    from collections.abc import AsyncIterator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


def at(clock: ManualClock, seconds: float = 0) -> datetime:
    return datetime.fromtimestamp(clock.time() + seconds, UTC)


@pytest.fixture(name="manager")
async def _manager(
    server: ASGIServer, clock: ManualClock
) -> AsyncIterator[tether.SessionManager]:
    """
    A manager with only the sandbox provider, no background pings, no waits.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"sandbox": {"base_url": server.url, "api_key": KEY, "timeout": 5}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    ) as manager:
        yield manager


async def test_a_ping_that_finds_nothing_new_writes_nothing(
    manager: tether.SessionManager,
) -> None:
    """
    A new lazy session has no VM, and create says so: pings that find the same
    leave the record as it is (no store write per ping), while one that finds
    a VM records it.
    """
    session = await manager.create("sandbox", lifetime=60)
    assert session.data["vm_assigned"] is False

    for _ in range(3):
        health = await manager.ping(session)
        assert HealthStatus.ALIVE == health.status
    unchanged = await manager.get(session.id)

    sandbox = manager.provider("sandbox")
    assert isinstance(sandbox, SandboxProvider)
    await sandbox.execute(session, "x = 1")  # the service spawns the VM now
    await manager.ping(session)
    after = await manager.get(session.id)

    assert session.version == unchanged.version
    assert after.version > unchanged.version
    assert after.data["vm_assigned"] is True
    assert after.data["vm_id"] is not None


async def test_create_ping_execute_close(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    The whole lifecycle: create (tagged), ping, run code, close (VM killed).
    """
    session = await manager.create(
        "sandbox", lifetime=60, labels={"job": "1"}, vcpu_count=2
    )
    assert session.state is SessionState.ACTIVE
    assert session.remote_id in emulator.live_sessions()
    assert emulator.session(str(session.remote_id))["metadata"]["tether_id"] == (
        session.id
    )

    health = await manager.ping(session)
    assert health.status is HealthStatus.ALIVE
    sandbox = manager.provider("sandbox")
    assert isinstance(sandbox, SandboxProvider)
    result = await sandbox.execute(session, "print('hi')")
    assert result.stdout == "hi\n"

    closed = await manager.close(session)
    assert closed.state is SessionState.CLOSED
    assert emulator.live_sessions() == set()
    again = await manager.close(closed)
    assert again.state is SessionState.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vcpu_count": 3}, "vcpu_count"),
        ({"memory_mb": 64}, "memory_mb"),
        ({"lifetime": 10}, "lifetime"),
        ({"lifetime": 60, "vm_lifetime_seconds": 90}, "lifetime"),
        ({"metadata": {"tether_id": "mine"}}, "metadata"),
        ({"gpus": 1}, "gpus"),
    ],
)
async def test_bad_parameters_send_nothing(
    manager: tether.SessionManager,
    server: ASGIServer,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    """
    Limits are checked before any request: the emulator hears nothing.
    """
    with pytest.raises(InvalidParameterError) as info:
        await manager.create("sandbox", **kwargs)

    assert info.value.field == field
    assert server.requests == []


async def test_update_and_renew_are_not_supported(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    Sessions cannot change after create, nor live longer: both refuse locally.
    """
    session = await manager.create("sandbox")
    sent = server.request_count

    with pytest.raises(NotSupportedError):
        await manager.update(session, env={"A": "1"})
    with pytest.raises(NotSupportedError):
        await manager.renew(session, lifetime=60)
    assert server.request_count == sent


async def test_expiry_with_env_follows_the_vm(
    manager: tether.SessionManager, emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    With ``env`` the VM starts at create; at its lifetime both sides end it.
    """
    session = await manager.create("sandbox", lifetime=30, env={"A": "1"})
    assert session.expires_at == at(clock, 30)

    await clock.advance(29)
    assert (await manager.get(session.id)).state is SessionState.ACTIVE
    await clock.advance(1)

    assert (await manager.get(session.id)).state is SessionState.EXPIRED
    assert emulator.live_sessions() == set()


async def test_ping_moves_the_deadline_to_the_lazy_vms(
    manager: tether.SessionManager, emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    A lazy VM's lifetime starts at the first execution; a ping learns the real
    deadline from ``expires_in_seconds`` and expiry follows it.
    """
    session = await manager.create("sandbox", lifetime=60)
    # No VM yet, so no deadline yet: the service counts from VM start, and a
    # guess would close the VM early.
    assert session.expires_at is None
    await clock.advance(20)
    await manager.provider("sandbox").execute(session, "x = 1")  # type: ignore[attr-defined]

    health = await manager.ping(session)
    assert health.expires_at == at(clock, 60)
    assert (await manager.get(session.id)).expires_at == at(clock, 60)

    await clock.advance(45)
    assert (await manager.get(session.id)).state is SessionState.ACTIVE
    assert session.remote_id in emulator.live_sessions()
    await clock.advance(15)
    assert (await manager.get(session.id)).state is SessionState.EXPIRED


async def test_ping_of_killed_session_marks_it_lost(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    A VM killed behind tether's back is GONE: the session becomes LOST.
    """
    session = await manager.create("sandbox", env={})
    emulator.kill(str(session.remote_id))

    health = await manager.ping(session)

    assert health.status is HealthStatus.GONE
    assert (await manager.get(session.id)).state is SessionState.LOST


async def test_vm_replacement_lands_in_session_data(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    After a ping sees a new VM, the session's data says it was replaced.
    """
    session = await manager.create("sandbox", env={})
    await manager.ping(session)
    first_vm = (await manager.get(session.id)).data["vm_id"]
    new_vm = emulator.replace_vm(str(session.remote_id))

    health = await manager.ping(session)
    stored = await manager.get(session.id)

    assert health.ok
    assert stored.data["vm_replaced"] is True
    assert (stored.data["previous_vm_id"], stored.data["vm_id"]) == (first_vm, new_vm)


async def test_create_outcome_unknown_is_found_not_repeated(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    A create whose answer was lost is found again by its metadata tag, so the
    service holds exactly one session.
    """
    emulator.faults.kinds = {Fault.DROP_AFTER}
    emulator.faults.rate = 1.0
    emulator.faults.applies_to = lambda scope: scope["path"] == "/v1/sessions/session"

    session = await manager.create("sandbox", lifetime=60)

    assert session.state is SessionState.ACTIVE
    assert emulator.live_sessions() == {session.remote_id}


async def test_exit_closes_tracked_sessions(
    server: ASGIServer, emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    Leaving the manager kills the VMs it created; the key comes from the env.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"sandbox": {"base_url": server.url}},
        clock=clock,
        health_checks=False,
        environ={"TETHER_SANDBOX_API_KEY": KEY},
    ) as manager:
        session = await manager.create("sandbox", env={"A": "1"})
        text = repr(manager) + repr(session) + json.dumps(session.to_dict())
        assert session.remote_id in emulator.live_sessions()

    assert KEY not in text
    assert emulator.live_sessions() == set()
