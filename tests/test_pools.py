"""
Warm pools, against the sandbox emulator on a real loopback socket: sessions
ready before they are asked for, checked before they are handed out, reused or
replaced when handed back, and never leaked (ground truth: the emulator's
``live_sessions()``).
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

import tether
from tether import EventKind, ManagerStateError, SessionState
from tether.exceptions import (
    ConfigError,
    InvalidParameterError,
    PoolExhaustedError,
)
from tether.testing import ManualClock, serve_asgi
from tether_sandbox import SandboxHandle, SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_pools_0123456789"


class CleanSandbox(SandboxProvider):
    """
    A sandbox whose used sessions can be made clean again.
    """

    resets = 0

    async def reset(self, session: tether.Session) -> bool:
        type(self).resets += 1
        return True


async def until(predicate: Callable[[], bool], *, within: float = 20.0) -> None:
    """
    Wait for *predicate* (liveness, with a generous margin).
    """
    with anyio.fail_after(within):
        # Polling: the state is the pool's, which has no event per figure.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def ended(manager: tether.SessionManager, session_id: str) -> SessionState:
    """
    The state a session's record ends in (closes run in the background).
    """
    with anyio.fail_after(20):
        while not (state := (await manager.get(session_id)).state).is_terminal or (  # noqa: ASYNC110
            state is SessionState.LOST
        ):
            await anyio.sleep(0.01)
    return state


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    """
    One manual clock for the emulator and the manager.
    """
    return ManualClock()


@pytest.fixture(name="emulator")
def _emulator(clock: ManualClock) -> SandboxEmulator:
    """
    The sandbox emulator, reading the manual clock.
    """
    return SandboxEmulator(clock=clock.time, api_keys=(KEY,))


@pytest.fixture(name="url")
async def _url(emulator: SandboxEmulator) -> AsyncIterator[str]:
    """
    The emulator on a loopback port.
    """
    async with serve_asgi(emulator.app) as server:
        yield server.url


def _manager(url: str, clock: ManualClock, **options: Any) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    registry.register("clean", CleanSandbox)
    config = {"api_key": KEY, "base_url": url, "timeout": 5}
    options.setdefault("health_checks", False)
    return tether.SessionManager(
        registry=registry,
        config={"sandbox": config, "clean": config},
        retry=tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        clock=clock,
        environ={},
        **options,
    )


@pytest.fixture(name="manager")
async def _manager_fixture(
    url: str, clock: ManualClock
) -> AsyncIterator[tether.SessionManager]:
    """
    A manager with the sandbox (and a resettable twin), no background pings.
    """
    async with _manager(url, clock) as manager:
        yield manager


async def test_min_idle_sessions_are_ready_before_anyone_asks(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    A pool tops its idle set up to min_idle in the background, each session
    labelled with the pool's name; acquire hands out the provider's typed
    handle, which works like any other.
    """
    pool = manager.pool(SandboxProvider, vcpu_count=2, min_idle=2, max_size=4)
    await until(lambda: pool.snapshot().idle == 2)
    idle = await manager.list(labels={"tether.pool": pool.name})

    async with pool.acquire() as sb:
        out = await sb.execute("print(1)")
        inside = pool.snapshot()
    await until(lambda: pool.snapshot().idle == 2)
    remotes = {(await manager.get(sid)).remote_id for sid in pool.idle_ids()}

    assert isinstance(sb, SandboxHandle)
    assert "1\n" == out.stdout
    assert 2 == len(idle)
    assert {2} == {s.params["vcpu_count"] for s in idle}
    assert {pool.name} == {s.labels["tether.pool"] for s in idle}
    assert 1 == inside.in_use
    assert remotes == emulator.live_sessions()


async def test_a_used_sandbox_is_closed_and_replaced(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    Code ran in it, and the sandbox cannot vouch for a clean VM: the session
    handed back is closed on the service, and a fresh one refills the pool.
    """
    pool = manager.pool("sandbox", min_idle=1, max_size=2)
    await until(lambda: pool.snapshot().idle == 1)
    async with pool.acquire() as sb:
        await sb.execute("x = 1")
        used = sb.remote_id
    await until(lambda: pool.snapshot().idle == 1 and pool.snapshot().refills == 2)

    assert used not in emulator.live_sessions()
    assert SessionState.CLOSED == (await manager.get(sb.id)).state
    assert 1 == pool.snapshot().recycled
    assert {*pool.idle_ids()} != {sb.id}


async def test_an_unused_session_goes_back_to_the_idle_set(
    manager: tether.SessionManager,
) -> None:
    """
    Nothing ran on it: the next caller gets the same session.
    """
    pool = manager.pool("sandbox", min_idle=1, max_size=1)
    await until(lambda: pool.snapshot().idle == 1)
    async with pool.acquire() as first:
        pass
    async with pool.acquire() as second:
        pass

    assert first.id == second.id
    assert 0 == pool.snapshot().recycled


async def test_a_provider_that_can_reset_gets_its_sessions_back(
    manager: tether.SessionManager,
) -> None:
    """
    A provider whose reset() says the session is clean gets it back into the
    idle set after use, with a pool.reset event.
    """
    CleanSandbox.resets = 0
    pool = manager.pool("clean", min_idle=1, max_size=1)
    await until(lambda: pool.snapshot().idle == 1)
    async with manager.events() as events:
        async with pool.acquire() as sb:
            await sb.run("execute", lambda s: sb.provider.execute(s, "x = 1"))
        event = await events.receive()
        while event.kind is not EventKind.POOL_RESET:
            event = await events.receive()
    async with pool.acquire() as again:
        pass

    assert 1 == CleanSandbox.resets
    assert sb.id == again.id
    assert pool.name == event.data["pool"]
    assert 1 == pool.snapshot().reset


async def test_a_session_the_service_killed_is_replaced_not_handed_out(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    The service ended an idle session behind the pool's back: the ping before
    hand-out finds it gone, the pool closes it (pool.replaced) and hands out
    a live one.
    """
    pool = manager.pool("sandbox", min_idle=2, max_size=3)
    await until(lambda: pool.snapshot().idle == 2)
    victim = pool.idle_ids()[0]
    emulator.kill((await manager.get(victim)).remote_id or "")
    async with manager.events() as events:
        async with pool.acquire() as sb:
            live = sb.remote_id in emulator.live_sessions()
        replaced = await events.receive()
        while replaced.kind is not EventKind.POOL_REPLACED:
            replaced = await events.receive()

    assert live
    assert sb.id != victim
    assert victim == replaced.data["session_id"]
    assert "gone" in (replaced.detail or "")
    assert SessionState.CLOSED == await ended(manager, victim)


async def test_idle_sessions_background_pings_find_lost_are_replaced(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    Idle sessions are pinged like any other: one the service ended is found
    LOST by the background ping, and the pool replaces it with no caller
    asking, keeping min_idle live sessions.
    """
    async with _manager(
        url,
        clock,
        health_checks=True,
        health=tether.HealthPolicy(interval=10, jitter=0),
    ) as manager:
        pool = manager.pool("sandbox", min_idle=2, max_size=3)
        await pool.wait_ready()
        victim = pool.idle_ids()[0]
        emulator.kill((await manager.get(victim)).remote_id or "")
        await clock.advance(10)  # the background pings run
        await until(lambda: pool.snapshot().replaced == 1)
        await until(lambda: pool.snapshot().idle == 2)
        remotes = {(await manager.get(sid)).remote_id for sid in pool.idle_ids()}
        live = emulator.live_sessions()
        lost = await manager.get(victim)

    assert victim not in pool.idle_ids()
    assert lost.state in {SessionState.LOST, SessionState.CLOSING, SessionState.CLOSED}
    assert remotes == live
    assert 2 == len(remotes)


async def test_a_session_near_its_deadline_is_replaced(
    manager: tether.SessionManager, clock: ManualClock
) -> None:
    """
    An idle session with less than min_remaining seconds left is not handed
    out, even without a ping.
    """
    pool = manager.pool(
        "sandbox",
        min_idle=1,
        lifetime=100,
        min_remaining=10,
        ping_on_acquire=False,
        env={"STAGE": "test"},  # the VM starts at create, and its lifetime
    )
    await until(lambda: pool.snapshot().idle == 1)
    old = pool.idle_ids()[0]
    await clock.advance(95)
    async with pool.acquire() as sb:
        pass

    assert sb.id != old
    assert 1 == pool.snapshot().replaced


@pytest.mark.parametrize(("pool_timeout", "waits"), [(30, True), (0, False)])
async def test_a_caller_waits_for_a_refill_under_way(
    manager: tether.SessionManager,
    emulator: SandboxEmulator,
    pool_timeout: float,
    waits: bool,
) -> None:
    """
    With a refill under way (VMs take 0.3 s to boot), a caller gets that
    session rather than start a create of its own, which could only land
    later; a pool that may not wait (timeout 0) creates the caller's at once.
    """
    emulator.startup_latency = 0.3
    pool = manager.pool("sandbox", min_idle=1, timeout=pool_timeout)
    await until(lambda: pool.snapshot().creating == 1)
    (refill,) = await manager.list(labels={"tether.pool": pool.name})
    async with pool.acquire() as sb:
        pass

    assert waits == (refill.id == sb.id)


async def test_a_full_pool_makes_callers_wait_then_raises(
    manager: tether.SessionManager,
) -> None:
    """
    At max_size a caller waits for a session handed back; past the pool's
    timeout it gets PoolExhaustedError (and a pool.exhausted event), and no
    session was created for it.
    """
    pool = manager.pool("sandbox", max_size=1, timeout=0.2, name="tiny")
    async with pool.acquire() as held:
        with pytest.raises(PoolExhaustedError) as caught:
            async with pool.acquire():
                pass
        snap = pool.snapshot()

    assert "tiny" == caught.value.pool
    assert 1 == caught.value.max_size
    assert (1, 1) == (snap.exhausted, snap.in_use)
    assert 1 == len(await manager.list(labels={"tether.pool": "tiny"}))
    assert held.state is SessionState.ACTIVE


async def test_a_waiting_caller_gets_the_session_handed_back(
    manager: tether.SessionManager,
) -> None:
    """
    A waiter is woken by the hand-back, and gets that very session.
    """
    pool = manager.pool("sandbox", max_size=1, timeout=30)
    got: list[str] = []

    async def second() -> None:
        async with pool.acquire() as sb:
            got.append(sb.id)

    async with anyio.create_task_group() as tg, pool.acquire() as first:
        tg.start_soon(second)
        await until(lambda: pool.snapshot().waiting == 1)

    assert [first.id] == got


async def test_the_callers_deadline_applies_and_leaks_nothing(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    A caller's own deadline cancels the wait (TimeoutError), and the pool is
    as it was.
    """
    pool = manager.pool("sandbox", max_size=1, timeout=30)
    async with pool.acquire():
        with pytest.raises(TimeoutError), anyio.fail_after(0.2):
            async with pool.acquire():
                pass
        snap = pool.snapshot()

    assert (0, 1, 0) == (snap.waiting, snap.in_use, snap.exhausted)
    assert 1 == len(emulator.live_sessions())


# httpx leaves a cancelled request's body generator to the garbage collector,
# and trio's finalizer warns about it: httpx's, not tether's.
_HTTPX_BODY = (
    "ignore:Exception ignored in. <async_generator object ByteStream.__aiter__"
    ":pytest.PytestUnraisableExceptionWarning"
)


@pytest.mark.filterwarnings(_HTTPX_BODY)
async def test_cancelled_acquires_leak_nothing(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    Acquires cancelled at random points (while creating, checking, working or
    handing back) leave no session the pool does not hold, and the manager's
    exit closes every one: the emulator ends with none live.
    """
    emulator.startup_latency = 0.005
    rng = random.Random(19)  # noqa: S311 -- not for security
    async with _manager(url, clock) as manager:
        pool = manager.pool("sandbox", min_idle=2, max_size=4, timeout=5)

        async def user() -> None:
            with anyio.move_on_after(rng.uniform(0, 0.03)):
                async with pool.acquire() as sb:
                    if rng.random() < 0.5:
                        await sb.execute("print(1)")
                    await anyio.sleep(rng.uniform(0, 0.01))

        for _ in range(6):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(user)
            await until(
                lambda: (pool.snapshot().creating, pool.snapshot().closing) == (0, 0)
            )
            held = {
                s.remote_id
                for s in await manager.list(
                    labels={"tether.pool": pool.name}, state=SessionState.ACTIVE
                )
            }
            # Settled, the service has exactly the sessions the pool holds.
            assert held == emulator.live_sessions()
            assert len(held) == pool.snapshot().idle
        snap = pool.snapshot()

    assert 0 == snap.in_use
    assert set() == emulator.live_sessions()


async def test_the_managers_exit_closes_idle_sessions_even_when_keeping(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    on_exit="keep" keeps your sessions; a pool's idle ones belong to no one
    and are closed.
    """
    async with _manager(url, clock, on_exit="keep") as manager:
        pool = manager.pool("sandbox", min_idle=3)
        await until(lambda: pool.snapshot().idle == 3)
        mine = await manager.create("sandbox")

    assert {mine.remote_id} == emulator.live_sessions()
    assert pool.closed
    with pytest.raises(ManagerStateError):
        async with pool.acquire():
            pass


async def test_reconcile_closes_the_pooled_sessions_of_a_manager_that_is_gone(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    A crashed manager's pooled sessions (labelled tether.pool, no lease held)
    have no user left: reconcile closes them, and only reports the unwatched
    session that is someone's.
    """
    store = tether.MemoryStore()
    async with _manager(url, clock, on_exit="keep", store=store) as crashed:
        # As a pool makes them; kept on exit, as a crash would leave them.
        pooled = await crashed.create("sandbox", labels={"tether.pool": "p"})
        kept = await crashed.create("sandbox")
    async with _manager(url, clock, store=store, on_exit="keep") as survivor:
        dry = await survivor.reconcile(dry_run=True)
        untouched = emulator.live_sessions()
        report = await survivor.reconcile()

    assert {pooled.remote_id, kept.remote_id} == untouched
    assert "closed" == {a.session_id: a.kind for a in dry.actions}[pooled.id]
    by_kind = {a.session_id: a.kind for a in report.actions}
    assert "closed" == by_kind[pooled.id]
    assert "unwatched" == by_kind[kept.id]
    assert {kept.remote_id} == emulator.live_sessions()


async def test_another_managers_reconcile_leaves_a_live_pools_sessions_alone(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    While the manager whose pool made them lives, another manager's reconcile
    on the same store closes none of its pooled sessions, idle or in use; they
    are closed when that manager exits.
    """
    store = tether.MemoryStore()
    async with (
        _manager(url, clock, store=store) as owner,
        _manager(url, clock, store=store) as other,
    ):
        pool = owner.pool("sandbox", min_idle=2, max_size=3)
        await until(lambda: pool.snapshot().idle == 2)
        async with pool.acquire() as sb:
            report = await other.reconcile()
            live = emulator.live_sessions()
            out = await sb.execute("print(3)")

    assert [] == [a for a in report.actions if a.kind == "closed"]
    assert 3 == len(live)
    assert "3\n" == out.stdout
    assert set() == emulator.live_sessions()


async def test_reconcile_closes_pooled_sessions_once_their_owner_is_gone(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    A pooled session names its manager (tether.pool.owner); one whose owner
    holds no liveness lease is a crashed manager's, idle or in use: reconcile
    closes it (a dry run only says so), and leaves a live owner's alone.
    """
    store = tether.MemoryStore()
    gone = {"tether.pool": "p", "tether.pool.owner": "a-manager-that-crashed"}
    async with _manager(url, clock, on_exit="keep", store=store) as crashed:
        left = [await crashed.create("sandbox", labels=gone) for _ in range(2)]
    async with (
        _manager(url, clock, store=store) as live,
        _manager(url, clock, store=store) as survivor,
    ):
        pool = live.pool("sandbox", min_idle=1)
        await pool.wait_ready()
        dry = await survivor.reconcile(dry_run=True)
        before = emulator.live_sessions()
        report = await survivor.reconcile()
        after = emulator.live_sessions()
        ids = pool.idle_ids()

    closed = {a.session_id for a in report.actions if a.kind == "closed"}
    assert {s.id for s in left} == closed
    assert closed == {a.session_id for a in dry.actions if a.kind == "closed"}
    assert 3 == len(before)
    assert 1 == len(after)
    assert not closed & set(ids)
    assert set() == emulator.live_sessions()


async def test_refills_keep_within_the_credentials_session_limit(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    With a credential limit of 3, a pool asked for 5 idle sessions holds 3,
    and the service never refused a create for the limit.
    """
    manager.provider("sandbox").set_capabilities(max_sessions_per_credential=3)
    emulator.max_sessions = 3
    pool = manager.pool("sandbox", min_idle=5, max_size=8)
    await until(lambda: pool.snapshot().idle == 3)
    await anyio.sleep(0.2)

    assert 3 == len(emulator.live_sessions())
    assert 3 == pool.snapshot().idle
    assert 3 == pool.snapshot().refills


async def test_refills_fail_over(
    url: str, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    A pool over a failover policy refills on the next candidate when the
    first cannot be reached.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("primary", SandboxProvider)
    registry.register("secondary", SandboxProvider)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    policy = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="primary"),
            tether.Candidate(provider="secondary"),
        ]
    )
    async with tether.SessionManager(
        registry=registry,
        config={
            "primary": {"api_key": KEY, "base_url": closed, "timeout": 2},
            "secondary": {"api_key": KEY, "base_url": url, "timeout": 5},
        },
        retry=tether.RetryPolicy(attempts=4, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    ) as manager:
        pool = manager.pool(policy, min_idle=2)
        await until(lambda: pool.snapshot().idle == 2)
        providers = {(await manager.get(sid)).provider for sid in pool.idle_ids()}

    assert {"secondary"} == providers
    assert set() == emulator.live_sessions()


async def test_bad_settings_fail_before_anything_is_sent(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    Bad parameters and settings raise typed errors at pool(), not later in
    a refill; the same arguments give the same pool.
    """
    with pytest.raises(InvalidParameterError):
        manager.pool("sandbox", vcpu_count=3)
    with pytest.raises(ConfigError, match="min_idle"):
        manager.pool("sandbox", min_idle=5, max_size=2)
    with pytest.raises(ConfigError, match="max_size"):
        manager.pool("sandbox", max_size=0)
    with pytest.raises(ConfigError, match="own"):
        manager.pool("sandbox", labels={"tether.pool": "x"})
    same = manager.pool(SandboxProvider, vcpu_count=2) is manager.pool(
        "sandbox", vcpu_count=2
    )
    with pytest.raises(ConfigError, match="other settings"):
        manager.pool("sandbox", vcpu_count=2, max_size=3)

    assert same
    assert set() == emulator.live_sessions()


async def test_refills_are_events_with_their_lag(
    manager: tether.SessionManager,
) -> None:
    """
    Each refill is a pool.refilled event naming the pool and the seconds
    since the pool fell short.
    """
    async with manager.events() as events:
        pool = manager.pool("sandbox", min_idle=2, name="evented")
        kinds = []
        while len([k for k in kinds if k is EventKind.POOL_REFILLED]) < 2:
            event = await events.receive()
            kinds.append(event.kind)
            if event.kind is EventKind.POOL_REFILLED:
                refilled = event

    assert "evented" == refilled.data["pool"]
    assert refilled.data["lag"] >= 0
    assert refilled.session is not None
    assert pool.snapshot().refills == 2


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_sync_facade_hands_out_sync_handles(
    emulator: SandboxEmulator, loop: str
) -> None:
    """
    SyncSessionManager.pool gives a pool whose acquire is a plain context
    manager with the provider's blocking handle.
    """
    from tether_sandbox import SyncSandboxHandle  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal(loop))
        server = stack.enter_context(
            portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        registry = tether.ProviderRegistry(entry_points=False)
        registry.register("sandbox", SandboxProvider)
        with tether.SyncSessionManager(
            portal=portal,
            registry=registry,
            config={"sandbox": {"api_key": KEY, "base_url": server.url}},
            health_checks=False,
            environ={},
        ) as manager:
            pool = manager.pool(SandboxProvider, min_idle=1)
            with pool.acquire() as sb:
                out = sb.execute("print(2)")
            snap = pool.snapshot()
        live = emulator.live_sessions()

    assert isinstance(sb, SyncSandboxHandle)
    assert "2\n" == out.stdout
    assert 1 == snap.acquired
    assert set() == live


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_sync_pool_after_its_manager_exits_raises_manager_state_error(
    emulator: SandboxEmulator, loop: str
) -> None:
    """
    A SyncPool used after its SyncSessionManager exited raises
    ManagerStateError, as a sync handle does, not the portal's RuntimeError.
    """
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal(loop))
        server = stack.enter_context(
            portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        registry = tether.ProviderRegistry(entry_points=False)
        registry.register("sandbox", SandboxProvider)
        with tether.SyncSessionManager(
            backend=loop,  # type: ignore[arg-type]
            registry=registry,
            config={"sandbox": {"api_key": KEY, "base_url": server.url}},
            health_checks=False,
            environ={},
        ) as manager:
            pool = manager.pool(SandboxProvider, min_idle=1)
            with pool.acquire():
                pass
        with pytest.raises(ManagerStateError):
            pool.snapshot()
        with pytest.raises(ManagerStateError), pool.acquire():
            pass
        live = emulator.live_sessions()

    assert set() == live
