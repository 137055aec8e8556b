"""
Calls on its own: one provider call under the retry policy and the circuit
breaker; only transient errors are retried, and the breaker counts each call
that failed after its retries.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import tether
from tether._events import CircuitBreaker
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.slots import Slot
from tether.exceptions import (
    AuthError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RateLimitedError,
)


B = tether.BreakerState
K = tether.EventKind


def slot(threshold: int = 2, cooldown: float = 30.0) -> Slot:
    # Calls never touches the provider or client itself: fn does.
    return Slot(
        name="fake",
        provider=None,
        client=None,
        ping_interval=10.0,
        breaker=CircuitBreaker(
            key="fake",
            policy=tether.BreakerPolicy(failure_threshold=threshold, cooldown=cooldown),
        ),
    )


def failing(*errors: BaseException, result: str = "ok") -> tuple[Callable, list[int]]:
    """
    A call that raises *errors* in turn, then returns *result*; and its count.
    """
    count = [0]

    async def fn() -> str:
        count[0] += 1
        if count[0] <= len(errors):
            raise errors[count[0] - 1]
        return result

    return fn, count


def unavailable() -> ProviderUnavailableError:
    return ProviderUnavailableError("503", provider="fake", operation="x")


@pytest.fixture(name="bus")
def _bus(runtime) -> EventBus:
    return EventBus(runtime, None)


@pytest.fixture(name="calls")
def _calls(runtime, bus) -> Calls:
    return Calls(runtime, bus)


def drain(stream) -> list[tether.Event]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except anyio.WouldBlock:
            return out


async def test_transient_errors_are_retried_within_the_attempts(calls):
    """
    Transient errors are retried, up to the policy's attempts (3 here).
    """
    fn, count = failing(unavailable(), unavailable())
    s = slot()

    assert "ok" == await calls.call(s, fn, operation="ping")
    assert 3 == count[0]
    assert (B.CLOSED, 0) == (s.breaker.state, s.breaker.failures)


async def test_the_last_transient_error_is_raised_after_the_attempts(calls):
    """
    When every attempt fails, the last error is raised as it was, and the
    breaker counts one failure (per call, not per attempt).
    """
    errors = [unavailable() for _ in range(3)]
    fn, count = failing(*errors)
    s = slot(threshold=5)

    with pytest.raises(ProviderUnavailableError) as info:
        await calls.call(s, fn, operation="ping")

    assert info.value is errors[-1]
    assert 3 == count[0]
    assert 1 == s.breaker.failures


async def test_permanent_errors_are_not_retried_nor_counted(calls):
    """
    A permanent error (auth) is raised at once and does not count against the
    breaker: the service answered.
    """
    fn, count = failing(AuthError("401", provider="fake", operation="x"))
    s = slot()

    with pytest.raises(AuthError):
        await calls.call(s, fn, operation="ping")

    assert (1, 0) == (count[0], s.breaker.failures)


async def test_an_unknown_outcome_is_retried_only_when_idempotent(calls):
    """
    A request that may have been carried out is not repeated unless repeating
    it is harmless; other transient errors are retried either way.
    """
    fn, count = failing(OutcomeUnknownError("?", provider="fake", operation="create"))
    with pytest.raises(OutcomeUnknownError):
        await calls.call(slot(), fn, operation="create", idempotent=False)
    assert 1 == count[0]

    fn, count = failing(unavailable())
    assert "ok" == await calls.call(slot(), fn, operation="create", idempotent=False)
    assert 2 == count[0]

    fn, count = failing(OutcomeUnknownError("?", provider="fake", operation="get"))
    assert "ok" == await calls.call(slot(), fn, operation="get")
    assert 2 == count[0]


async def test_a_budget_bounds_the_attempts(calls):
    """
    An explicit attempt budget replaces the policy's attempts, and records
    what was used.
    """
    fn, count = failing(unavailable(), unavailable())
    budget = tether._retry.AttemptBudget(total=1)

    with pytest.raises(ProviderUnavailableError):
        await calls.call(slot(), fn, operation="ping", budget=budget)

    assert (1, True) == (count[0], budget.exhausted)


async def test_retry_waits_on_the_managers_clock(calls, clock):
    """
    A Retry-After is honoured on the manager's clock: the retry waits until
    the clock has moved that far, not a moment less.
    """
    fn, count = failing(
        RateLimitedError("429", retry_after=7, provider="fake", operation="x")
    )
    results: list[str] = []

    async with anyio.create_task_group() as tg:

        async def go() -> None:
            results.append(await calls.call(slot(), fn, operation="ping"))

        tg.start_soon(go)
        await clock.advance(6.9)
        assert ([], 1) == (results, count[0])
        await clock.advance(0.1)

    assert (["ok"], 2) == (results, count[0])


async def test_the_breaker_opens_after_the_policys_failures_with_an_event(calls, bus):
    """
    ``failure_threshold`` failed calls in a row open the provider's breaker,
    and a BREAKER_OPENED event names it (once).
    """
    s = slot(threshold=2)
    async with bus.subscribe(10) as stream:
        for _ in range(3):
            fn, _count = failing(*[unavailable()] * 3)
            with pytest.raises(ProviderUnavailableError):
                await calls.call(s, fn, operation="ping")
            if s.breaker.failures == 1:
                assert B.CLOSED == s.breaker.state
        events = drain(stream)

    assert B.OPEN == s.breaker.state
    assert [(K.BREAKER_OPENED, "fake")] == [(e.kind, e.data["breaker"]) for e in events]


async def test_breaker_false_leaves_the_breaker_alone(calls):
    """
    Calls made with ``breaker=False`` (best-effort closes on exit) never count.
    """
    s = slot(threshold=1)
    fn, _count = failing(*[unavailable()] * 3)

    with pytest.raises(ProviderUnavailableError):
        await calls.call(s, fn, operation="close", breaker=False)

    assert (B.CLOSED, 0) == (s.breaker.state, s.breaker.failures)


async def test_a_success_resets_failures_and_closes_an_open_breaker(calls, bus, clock):
    """
    A success after failures resets the count (no event while the breaker
    stayed closed); a probe that succeeds on a half-open breaker closes it,
    with BREAKER_HALF_OPEN then BREAKER_CLOSED.
    """
    s = slot(threshold=2, cooldown=30)
    async with bus.subscribe(10) as stream:
        fn, _ = failing(*[unavailable()] * 3)
        with pytest.raises(ProviderUnavailableError):
            await calls.call(s, fn, operation="ping")
        fn, _ = failing()
        await calls.call(s, fn, operation="ping")
        assert (B.CLOSED, 0) == (s.breaker.state, s.breaker.failures)
        assert [] == drain(stream)

        for _ in range(2):
            fn, _ = failing(*[unavailable()] * 3)
            with pytest.raises(ProviderUnavailableError):
                await calls.call(s, fn, operation="ping")
        assert not calls.allow(s.breaker, "fake")  # cooling down
        await clock.advance(30)
        assert calls.allow(s.breaker, "fake")  # one probe
        assert not calls.allow(s.breaker, "fake")  # and only one
        fn, _ = failing()
        await calls.call(s, fn, operation="ping")
        events = drain(stream)

    assert B.CLOSED == s.breaker.state
    assert [K.BREAKER_OPENED, K.BREAKER_HALF_OPEN, K.BREAKER_CLOSED] == [
        e.kind for e in events
    ]
