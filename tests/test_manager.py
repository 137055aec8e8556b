"""
The SessionManager's lifecycle, driven through the FakeProvider.
"""

from __future__ import annotations

import decimal
from datetime import timedelta
from typing import Any, ClassVar

import anyio
import attrs
import pytest
import structlog

import tether
from tether.abc import Capabilities
from tether.exceptions import (
    ConfigError,
    InvalidParameterError,
    NotSupportedError,
    OutcomeUnknownError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    SessionClosedError,
    SessionNotFoundError,
)
from tether.testing import FakeBackend, FakeProvider, ManualClock


FAST = tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0)


class NoUpdate(FakeProvider):
    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, update=False, renew=False, find=False, list=False
    )


@pytest.fixture(name="registry")
def _registry() -> tether.ProviderRegistry:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    registry.register("noupdate", NoUpdate)
    return registry


def manager_for(
    registry: tether.ProviderRegistry,
    backend: FakeBackend,
    clock: ManualClock,
    **kw: Any,
) -> tether.SessionManager:
    return tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}, "noupdate": {"backend": backend}},
        retry=kw.pop("retry", FAST),
        clock=clock,
        environ={},
        **kw,
    )


async def test_session_block_creates_and_closes(tether_manager, tether_fake_backend):
    """
    manager.session() yields an ACTIVE session and closes it on exit.
    """
    async with tether_manager.session("fake", size=2, labels={"job": "42"}) as s:
        assert tether.SessionState.ACTIVE == s.state
        assert {"job": "42"} == dict(s.labels)
        assert s.remote_id in tether_fake_backend.live_ids()

    assert tether.SessionState.CLOSED == (await tether_manager.get(s.id)).state
    assert set() == tether_fake_backend.live_ids()


async def test_session_block_closes_on_error(tether_manager, tether_fake_backend):
    """
    An exception inside the block still closes the session.
    """
    with pytest.raises(RuntimeError, match="boom"):
        async with tether_manager.session("fake") as s:
            raise RuntimeError("boom")

    assert tether.SessionState.CLOSED == (await tether_manager.get(s.id)).state
    assert set() == tether_fake_backend.live_ids()


async def test_session_block_closes_on_cancellation(
    tether_manager, tether_fake_backend
):
    """
    Cancelling the block's scope still closes the session, shielded.
    """
    created: list[tether.Session] = []
    with anyio.CancelScope() as scope:
        async with tether_manager.session("fake") as s:
            created.append(s)
            scope.cancel()
            await anyio.sleep_forever()

    assert tether.SessionState.CLOSED == (await tether_manager.get(created[0].id)).state
    assert set() == tether_fake_backend.live_ids()


async def test_ping_returns_health_and_keeps_state(tether_manager):
    """
    A ping of a live session returns ALIVE health with the raw state.
    """
    s = await tether_manager.create("fake")

    health = await tether_manager.ping(s)

    assert tether.HealthStatus.ALIVE == health.status
    assert "running" == health.raw_state
    assert tether.SessionState.ACTIVE == (await tether_manager.get(s.id)).state


async def test_update_changes_the_session(tether_manager, tether_fake_backend):
    """
    update() applies changes on the service and returns the new value.
    """
    s = await tether_manager.create("fake", note="a")

    s = await tether_manager.update(s, note="b")

    assert "b" == s.data["params"]["note"]
    assert "b" == tether_fake_backend.sessions[s.remote_id].params["note"]


async def test_update_not_supported_sends_nothing(
    registry, tether_fake_backend, tether_clock
):
    """
    A provider without update raises NotSupportedError before any call.
    """
    async with manager_for(registry, tether_fake_backend, tether_clock) as manager:
        s = await manager.create("noupdate")
        with pytest.raises(NotSupportedError) as info:
            await manager.update(s, note="x")

    assert "update" == info.value.operation
    assert 0 == tether_fake_backend.calls["update"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": 9}, "size"),
        ({"size": "2"}, "size"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_params_rejected_before_any_call(
    tether_manager, tether_fake_backend, params, field
):
    """
    Invalid create parameters raise InvalidParameterError naming the field; nothing is sent.
    """
    with pytest.raises(InvalidParameterError) as info:
        await tether_manager.create("fake", **params)

    assert field == info.value.field
    assert 0 == tether_fake_backend.calls["create"]
    assert [] == await tether_manager.list()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"lifetime": -1}, "lifetime"),
        ({"lifetime": 0}, "lifetime"),
        ({"lifetime": float("nan")}, "lifetime"),
        ({"lifetime": 10**9}, "lifetime"),
        ({"labels": {"a": 1}}, "labels"),
    ],
)
async def test_bad_generic_input_rejected(
    tether_manager, tether_fake_backend, kw, field
):
    """
    Bad lifetimes and labels are refused before any call.
    """
    with pytest.raises(InvalidParameterError) as info:
        await tether_manager.create("fake", **kw)

    assert field == info.value.field
    assert 0 == tether_fake_backend.calls["create"]


async def test_unknown_provider(tether_manager):
    """
    An unknown provider name raises ProviderNotFoundError listing what exists.
    """
    with pytest.raises(ProviderNotFoundError) as info:
        await tether_manager.create("nope")

    assert "fake" in info.value.available


async def test_config_error_before_network(registry, tether_fake_backend, tether_clock):
    """
    An unknown config key is a ConfigError on first use.
    """
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"colour": 1}},
        clock=tether_clock,
        environ={},
    ) as manager:
        with pytest.raises(ConfigError, match="colour"):
            await manager.create("fake")


async def test_config_from_environment(registry, tether_clock):
    """
    Fields not given come from TETHER_<PROVIDER>_<FIELD> variables, converted by type.
    """
    async with tether.SessionManager(
        registry=registry,
        clock=tether_clock,
        environ={"TETHER_FAKE_API_KEY": "env-key", "TETHER_FAKE_TIMEOUT": "7.5"},
    ) as manager:
        provider = manager.provider("fake")

    assert tether.Secret("env-key") == provider.config.api_key
    assert 7.5 == provider.config.timeout
    assert "env-key" not in repr(provider.config)


async def test_lifetime_sets_deadline(tether_manager, tether_clock):
    """
    A lifetime gives the session an expires_at on the manager's clock.
    """
    s = await tether_manager.create("fake", lifetime=timedelta(minutes=2))

    assert 120 == pytest.approx(
        s.seconds_left(tether.Session.from_dict(s.to_dict()).created_at)
    )
    assert tether_clock.time() + 120 == pytest.approx(s.expires_at.timestamp())


async def test_close_is_idempotent(tether_manager, tether_fake_backend):
    """
    Closing twice returns the closed session; the service is asked once.
    """
    s = await tether_manager.create("fake")

    first = await tether_manager.close(s)
    second = await tether_manager.close(s)

    assert tether.SessionState.CLOSED == first.state == second.state
    assert 1 == tether_fake_backend.calls["close"]


async def test_closed_session_refuses_work(tether_manager):
    """
    ping and update on a closed session raise SessionClosedError.
    """
    s = await tether_manager.close(await tether_manager.create("fake"))

    with pytest.raises(SessionClosedError):
        await tether_manager.ping(s)
    with pytest.raises(SessionClosedError):
        await tether_manager.update(s, note="x")


async def test_close_already_gone_counts_as_closed(tether_manager, tether_fake_backend):
    """
    A 404 on close means already gone: the session is CLOSED.
    """
    s = await tether_manager.create("fake")
    tether_fake_backend.fail("close", "not_found")

    closed = await tether_manager.close(s)

    assert tether.SessionState.CLOSED == closed.state


async def test_close_failure_keeps_record(tether_manager, tether_fake_backend):
    """
    A close that keeps failing raises and leaves the record CLOSING, not forgotten.
    """
    s = await tether_manager.create("fake")
    tether_fake_backend.fail("close", "unavailable", times=10)

    with pytest.raises(ProviderUnavailableError):
        await tether_manager.close(s)

    assert tether.SessionState.CLOSING == (await tether_manager.get(s.id)).state


async def test_get_unknown(tether_manager):
    """
    get() of an unknown id raises SessionNotFoundError.
    """
    with pytest.raises(SessionNotFoundError):
        await tether_manager.get("nope")


async def test_list_filters(tether_manager):
    """
    list() filters by provider, state and labels.
    """
    a = await tether_manager.create("fake", labels={"job": "1"})
    b = await tether_manager.create("fake", labels={"job": "2"})
    await tether_manager.close(b)

    assert {a.id, b.id} == {s.id for s in await tether_manager.list(provider="fake")}
    assert [a.id] == [
        s.id for s in await tether_manager.list(state=tether.SessionState.ACTIVE)
    ]
    assert [b.id] == [s.id for s in await tether_manager.list(labels={"job": "2"})]
    assert [] == await tether_manager.list(provider="other")


async def test_renew_extends_never_shortens(tether_manager, tether_clock):
    """
    renew() moves the deadline forward, and a shorter renewal keeps the later one.
    """
    s = await tether_manager.create("fake", lifetime=100)
    await tether_clock.advance(10)

    longer = await tether_manager.renew(s, lifetime=500)
    shorter = await tether_manager.renew(s, lifetime=5)

    assert tether_clock.time() + 500 == pytest.approx(longer.expires_at.timestamp())
    assert longer.expires_at == shorter.expires_at


async def test_renew_not_supported(registry, tether_fake_backend, tether_clock):
    """
    A provider with a server lifetime it cannot extend refuses renew.
    """
    async with manager_for(registry, tether_fake_backend, tether_clock) as manager:
        s = await manager.create("noupdate", lifetime=100)
        with pytest.raises(NotSupportedError):
            await manager.renew(s)


async def test_on_exit_keep_leaves_sessions_for_attach(
    registry, tether_fake_backend, tether_clock
):
    """
    With on_exit="keep", sessions survive the manager, and another manager on the
    same store attaches and closes them.
    """
    store = tether.MemoryStore()
    async with manager_for(
        registry, tether_fake_backend, tether_clock, store=store, on_exit="keep"
    ) as m1:
        s = await m1.create("fake")
    assert s.remote_id in tether_fake_backend.live_ids()

    async with manager_for(
        registry, tether_fake_backend, tether_clock, store=store
    ) as m2:
        attached = await m2.attach(s.id)
        assert tether.SessionState.ACTIVE == attached.state

    assert set() == tether_fake_backend.live_ids()
    assert tether.SessionState.CLOSED == (await store.get(s.id)).state


async def test_on_exit_close_closes_everything(
    registry, tether_fake_backend, tether_clock
):
    """
    By default, leaving the manager closes every session it created.
    """
    async with manager_for(registry, tether_fake_backend, tether_clock) as manager:
        for _ in range(5):
            await manager.create("fake")
        assert 5 == len(tether_fake_backend.live_ids())

    assert set() == tether_fake_backend.live_ids()


async def test_manager_must_be_entered(registry):
    """
    Using a manager outside 'async with', or after it, raises ManagerStateError.
    """
    manager = tether.SessionManager(registry=registry, environ={})
    with pytest.raises(tether.ManagerStateError):
        await manager.create("fake")
    async with manager:
        pass
    with pytest.raises(tether.ManagerStateError):
        await manager.create("fake")
    with pytest.raises(tether.ManagerStateError):
        async with manager:
            pass


async def test_cancelled_create_leaves_nothing_running(
    tether_manager, tether_fake_backend
):
    """
    A create cancelled while the service works finishes shielded, is recorded,
    and is closed again: nothing is left running and untracked.
    """
    entered, release = tether_fake_backend.gate("create")

    async def create() -> None:
        await tether_manager.create("fake")

    async with anyio.create_task_group() as tg:
        tg.start_soon(create)
        await entered.wait()
        tg.cancel_scope.cancel()
        # The create is shielded: it waits for the service, which now answers.
        release.set()

    records = await tether_manager.list()
    assert 1 == len(records)
    assert tether.SessionState.CLOSED == records[0].state
    assert 1 == tether_fake_backend.calls["create"]
    assert set() == tether_fake_backend.live_ids()


async def test_cancelled_close_still_closes(tether_manager, tether_fake_backend):
    """
    A close cancelled half-way completes (shielded): the service ends the session.
    """
    s = await tether_manager.create("fake")
    entered, release = tether_fake_backend.gate("close")

    async with anyio.create_task_group() as tg:
        tg.start_soon(tether_manager.close, s)
        await entered.wait()
        tg.cancel_scope.cancel()
        release.set()

    assert tether.SessionState.CLOSED == (await tether_manager.get(s.id)).state
    assert set() == tether_fake_backend.live_ids()


async def test_create_outcome_unknown_is_found_not_repeated(
    tether_manager, tether_fake_backend
):
    """
    A create that timed out after the service made the session is found by its
    tag and adopted, not created twice.
    """
    tether_fake_backend.fail("create", "timeout")

    s = await tether_manager.create("fake")

    assert 1 == tether_fake_backend.calls["create"]
    assert 1 == tether_fake_backend.calls["find"]
    assert {s.remote_id} == tether_fake_backend.live_ids()


async def test_create_outcome_unknown_without_find_keeps_intent(
    registry, tether_fake_backend, tether_clock
):
    """
    Without find or list, an unknown outcome raises and the intent stays on
    record as CREATING.
    """
    tether_fake_backend.fail("create", "timeout")
    async with manager_for(
        registry, tether_fake_backend, tether_clock, on_exit="keep"
    ) as manager:
        with pytest.raises(OutcomeUnknownError):
            await manager.create("noupdate")
        records = await manager.list()

    assert 1 == tether_fake_backend.calls["create"]
    assert [tether.SessionState.CREATING] == [r.state for r in records]
    assert "outcome unknown" in (records[0].error or "")


async def test_permanent_create_failure_is_failed(tether_manager, tether_fake_backend):
    """
    An auth failure on create is not retried, and the record is FAILED.
    """
    tether_fake_backend.fail("create", "auth")

    with pytest.raises(tether.exceptions.AuthError):
        await tether_manager.create("fake")

    assert 1 == tether_fake_backend.calls["create"]
    assert [tether.SessionState.FAILED] == [
        s.state for s in await tether_manager.list()
    ]


async def test_transient_create_failure_is_retried(tether_manager, tether_fake_backend):
    """
    A 503 on create is retried within the budget.
    """
    tether_fake_backend.fail("create", "unavailable", times=2)

    s = await tether_manager.create("fake")

    assert 3 == tether_fake_backend.calls["create"]
    assert tether.SessionState.ACTIVE == s.state


async def test_secrets_absent_from_logs_reprs_and_records(registry, tether_clock):
    """
    The API key never appears in log events, reprs, errors or stored records.
    """
    key = "sk-abcdef.do-not-print-me"
    backend = FakeBackend(clock=tether_clock.time)
    store = tether.MemoryStore()
    with structlog.testing.capture_logs() as logs:
        async with tether.SessionManager(
            registry=registry,
            config={"fake": {"backend": backend, "api_key": key}},
            retry=FAST,
            clock=tether_clock,
            store=store,
            environ={},
        ) as manager:
            backend.fail("create", "unavailable")
            s = await manager.create("fake", labels={"a": "b"})
            await manager.ping(s)
            backend.fail("close", "auth")
            with pytest.raises(tether.exceptions.AuthError) as info:
                await manager.close(s)
            texts = [
                repr(manager),
                repr(manager.provider("fake")),
                repr(manager.provider("fake").config),
                repr(s),
                str(info.value),
                repr(info.value.body),
                repr(await store.list()),
                repr(manager.snapshot()),
            ]
            await manager.close(s)

    assert logs, "the manager logged nothing"
    blob = "\n".join(texts) + repr(logs)
    assert key not in blob
    assert "do-not-print-me" not in blob


async def test_cancel_while_backing_off_stops_retrying(registry, tether_clock):
    """
    A caller cancelled between create attempts is not kept waiting: retries stop,
    and the intent is recorded FAILED since the service made nothing.
    """
    backend = FakeBackend(clock=tether_clock.time)
    backend.fail("create", "unavailable", times=100)
    policy = tether.RetryPolicy(attempts=10, wait_initial=5, wait_max=5)
    async with manager_for(registry, backend, tether_clock, retry=policy) as manager:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.create, "fake")
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        records = await manager.list()

    assert 1 == backend.calls["create"]
    assert [tether.SessionState.FAILED] == [r.state for r in records]
    assert set() == backend.live_ids()


async def test_exceptions_in_the_block_propagate_unwrapped(registry, tether_clock):
    """
    An exception raised inside 'async with SessionManager()' comes out as itself,
    not wrapped in an ExceptionGroup, and the sessions are still closed.
    """
    backend = FakeBackend(clock=tether_clock.time)
    with pytest.raises(KeyError, match="boom"):
        async with manager_for(registry, backend, tether_clock) as manager:
            await manager.create("fake")
            raise KeyError("boom")

    assert set() == backend.live_ids()


async def test_outer_cancellation_is_not_swallowed(registry, tether_clock):
    """
    Cancelling a scope around the manager cancels the block and still closes sessions.
    """
    backend = FakeBackend(clock=tether_clock.time)
    reached = False
    with anyio.CancelScope() as scope:
        async with manager_for(registry, backend, tether_clock) as manager:
            await manager.create("fake")
            scope.cancel()
            await anyio.sleep_forever()
        reached = True

    assert scope.cancelled_caught
    assert not reached
    assert set() == backend.live_ids()


class ListOnly(FakeProvider):
    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, find=False
    )


async def test_create_outcome_unknown_found_in_list(registry, tether_clock):
    """
    Without find but with list, a create whose answer was lost is found by its
    tag in the service's list and adopted, not repeated.
    """
    backend = FakeBackend(clock=tether_clock.time)
    registry.register("listonly", ListOnly)
    backend.fail("create", "timeout")
    async with tether.SessionManager(
        registry=registry,
        config={"listonly": {"backend": backend}},
        retry=FAST,
        clock=tether_clock,
        environ={},
        on_exit="keep",
    ) as manager:
        s = await manager.create("listonly")

    assert 1 == backend.calls["create"]
    assert 0 == backend.calls["find"]
    assert 1 == backend.calls["list"]
    assert {s.remote_id} == backend.live_ids()


async def test_block_error_wins_over_a_failed_close(
    tether_manager, tether_fake_backend
):
    """
    When the block raises and the close fails too, the block's error is the one
    raised; the session stays on record as CLOSING for a later close.
    """
    with pytest.raises(RuntimeError, match="block"):
        async with tether_manager.session("fake") as s:
            tether_fake_backend.fail("close", "unavailable", times=10)
            raise RuntimeError("block")

    assert tether.SessionState.CLOSING == (await tether_manager.get(s.id)).state


async def test_failed_close_after_a_clean_block_raises(
    tether_manager, tether_fake_backend
):
    """
    When the block succeeds but the close fails, the close's error is raised.
    """
    with pytest.raises(ProviderUnavailableError):
        async with tether_manager.session("fake"):
            tether_fake_backend.fail("close", "unavailable", times=10)


@pytest.mark.parametrize("bad", [None, {"id": "x"}, 42, b"id"])
@pytest.mark.parametrize(
    "call",
    [
        lambda m, s: m.ping(s),
        lambda m, s: m.close(s),
        lambda m, s: m.get(s),
        lambda m, s: m.renew(s, lifetime=60),
        lambda m, s: m.attach(s),
        lambda m, s: m.update(s, note="x"),
    ],
    ids=["ping", "close", "get", "renew", "attach", "update"],
)
async def test_a_wrong_type_of_session_is_a_typed_error(
    tether_manager, tether_fake_backend, call, bad
):
    """
    Anything but a Session or an id is refused with InvalidParameterError (a
    TetherError and a ValueError), before anything is sent.
    """
    with pytest.raises(tether.exceptions.InvalidParameterError) as info:
        await call(tether_manager, bad)

    assert "session" == info.value.field
    assert 0 == sum(tether_fake_backend.calls.values())


async def test_a_wrong_type_of_session_in_scope_is_a_typed_error(tether_manager):
    """
    scope() refuses a wrong type the same way.
    """
    with pytest.raises(tether.exceptions.InvalidParameterError):
        async with tether_manager.scope(None):
            pass


async def test_a_rate_limited_close_fails_typed_not_at_the_shield_deadline(
    tether_registry, tether_fake_backend, tether_clock
):
    """
    A close refused with a Retry-After longer than the close may still take
    raises the RateLimitedError at once (not "did not finish" at the shield
    deadline), leaves the record CLOSING and says so in a close_failed event;
    on exit, the same failure is logged, never silent.
    """
    with structlog.testing.capture_logs() as logs:
        async with tether.SessionManager(
            registry=tether_registry,
            config={"fake": {"backend": tether_fake_backend}},
            clock=tether_clock,
            shield_timeout=2,
            health_checks=False,
            environ={},
        ) as manager:
            s = await manager.create("fake")
            left = await manager.create("fake")
            tether_fake_backend.fail("close", "rate_limited", times=10, retry_after=60)
            async with manager.events() as events:
                with pytest.raises(tether.exceptions.RateLimitedError) as info:
                    await manager.close(s)
                event = events.receive_nowait()

            assert 60 == info.value.retry_after
            assert tether.SessionState.CLOSING == (await manager.get(s.id)).state
            assert (tether.EventKind.CLOSE_FAILED, s.id) == (
                event.kind,
                event.session.id,
            )

    failed_on_exit = [
        e
        for e in logs
        if e["event"] == "tether.session.close_failed"
        and e.get("session_id") == left.id
        and e.get("error") == "RateLimitedError"
    ]
    assert failed_on_exit
    assert {s.remote_id, left.remote_id} == tether_fake_backend.live_ids()


def test_a_bad_environment_value_names_the_variable_and_what_is_valid():
    """
    ``TETHER_FAKE_TIMEOUT=abc`` is refused naming the variable and what it
    accepts, never quoting the value (it may be a secret).
    """
    from tether._config import build_provider_config  # noqa: PLC0415
    from tether.testing._fake import FakeConfig  # noqa: PLC0415

    with pytest.raises(tether.exceptions.InvalidParameterError) as info:
        build_provider_config(
            FakeConfig, "fake", None, {"TETHER_FAKE_TIMEOUT": "abc-secretish"}
        )

    assert "TETHER_FAKE_TIMEOUT must be a number" in str(info.value)
    assert "abc-secretish" not in str(info.value)
    assert ("timeout", "a number (e.g. 30 or 2.5)") == (
        info.value.field,
        info.value.allowed,
    )


@pytest.mark.parametrize(
    "config",
    [
        {"base_url": 42},
        {"base_url": None},
        {"timeout": decimal.Decimal("-sNaN")},
        {"timeout": "thirty"},
        {"api_key": 12345},
    ],
    ids=["int-url", "none-url", "snan-timeout", "str-timeout", "int-key"],
)
async def test_odd_config_values_are_config_errors(
    tether_registry, tether_fake_backend, config
):
    """
    Values of the wrong type or a signalling NaN in a provider's config are a
    ConfigError when the provider is first used, never a crash from inside.
    """
    async with tether.SessionManager(
        registry=tether_registry,
        config={"fake": {"backend": tether_fake_backend, **config}},
        environ={},
    ) as manager:
        with pytest.raises(tether.ConfigError):
            await manager.create("fake")

    assert 0 == tether_fake_backend.calls["create"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_manager_can_be_built_outside_an_event_loop(backend: str) -> None:
    """
    An application may build its manager at import time (a module global)
    and enter it later, in whichever event loop it runs.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    manager = tether.SessionManager(registry=registry, health_checks=False, environ={})

    async def main() -> tether.SessionState:
        async with manager:
            session = await manager.create("fake")
            return (await manager.close(session)).state

    assert tether.SessionState.CLOSED == anyio.run(main, backend=backend)


async def test_search_asks_the_service_by_labels(registry, tether_clock):
    """
    ``search`` asks the service, not the store: a session the service holds
    under matching labels is found although this manager has no record of it;
    a provider that cannot list refuses before anything is sent.
    """
    backend = FakeBackend(clock=tether_clock.time)
    keep = manager_for(
        registry, backend, tether_clock, health_checks=False, on_exit="keep"
    )
    async with keep as m:
        ours = await m.create("fake", labels={"team": "ml", "run": "1"})
        await m.create("fake", labels={"team": "web"})
    async with manager_for(registry, backend, tether_clock, health_checks=False) as m:
        found = await m.search(FakeProvider, labels={"team": "ml"})
        everything = await m.search("fake")
        with pytest.raises(tether.NotSupportedError):
            await m.search("noupdate")
        with pytest.raises(tether.InvalidParameterError):
            await m.search("fake", labels={"team": 1})
        with pytest.raises(tether.InvalidParameterError):
            await m.search("fake", colour="red")
        records = await m.list()

    assert [ours.remote_id] == [r.id for r in found]
    assert {"team": "ml", "run": "1"} == dict(found[0].labels)
    assert 2 == len(everything)
    assert [] == records
    assert 2 == backend.calls["list"]  # one per search that was sent


async def test_a_provider_is_found_by_its_class(tether_manager):
    """
    ``manager.provider(FakeProvider)`` is the running provider registered for
    that class; a class no name refers to is a typed error.
    """

    class Unregistered(FakeProvider):
        pass

    assert tether_manager.provider(FakeProvider) is tether_manager.provider("fake")
    with pytest.raises(ProviderNotFoundError, match="Unregistered"):
        tether_manager.provider(Unregistered)
