"""
Retrying provider calls: the only module that imports tenacity.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import attrs
import tenacity as _t

from tether._config import RetryPolicy
from tether._log import EVENT_RETRY_SCHEDULED, logger
from tether.exceptions import (
    OutcomeUnknownError,
    RateLimitedError,
    TetherError,
    TransientProviderError,
)


T = TypeVar("T")


@attrs.define
class AttemptBudget:
    """
    The attempts one operation may make, shared by its retries and fallbacks.
    """

    total: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.total - self.used)

    @property
    def exhausted(self) -> bool:
        return self.used >= self.total

    def spend(self) -> None:
        self.used += 1


class BudgetExhaustedError(TetherError):
    """
    Raised inside the manager when an operation has no attempts left.
    """


def retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """
    Whether *exc* is worth another attempt.

    A request that may have been carried out (:class:`OutcomeUnknownError`) is
    retried only when repeating it is harmless.
    """
    if not isinstance(exc, TransientProviderError):
        return False
    return idempotent or not isinstance(exc, OutcomeUnknownError)


def _delay(policy: RetryPolicy, attempt: int, exc: BaseException | None) -> float:
    """
    The wait after failed attempt number *attempt*: full-jitter exponential
    backoff (as ``tenacity.wait_random_exponential``), at least ``Retry-After``.
    """
    delay = 0.0
    if policy.wait_max > 0:
        high = min(policy.wait_max, policy.wait_initial * 2 ** (attempt - 1))
        delay = random.uniform(0, max(0.0, high))  # noqa: S311 -- jitter
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        delay = max(delay, min(exc.retry_after, policy.retry_after_max))
    return delay


def _wait(policy: RetryPolicy, offset: int) -> Callable[[_t.RetryCallState], float]:
    def wait(state: _t.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return _delay(policy, state.attempt_number + offset, exc)

    return wait


def _outlasts_deadline(delay: float) -> bool:
    """
    Whether waiting *delay* seconds would run past the caller's deadline (a
    shielded close's, say): then the error is raised now, as it is, rather
    than slept on until the deadline cancels the wait and hides it.
    """
    deadline = anyio.current_effective_deadline()
    return deadline != math.inf and anyio.current_time() + delay >= deadline


async def call(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: AttemptBudget | None,
    sleep: Callable[[float], Awaitable[None]],
    time: Callable[[], float],
    operation: str,
    provider: str,
    idempotent: bool = True,
    session_id: str | None = None,
) -> T:
    """
    Call *fn*, retrying transient failures within *budget* and *policy*.

    Without a *budget*, the operation gets its own of ``policy.attempts``.
    Cancellation is a :class:`BaseException` and is never retried. The last
    error is re-raised as it was.
    """
    if budget is None:
        budget = AttemptBudget(total=policy.attempts)
    elif budget.exhausted:
        msg = f"{operation} on {provider}: no attempts left"
        raise BudgetExhaustedError(msg)
    started = time()
    # Fast path: nearly every call succeeds at once, and needs none of
    # tenacity's machinery (building it costs more than the rest of a call).
    budget.used += 1
    try:
        return await fn()
    except Exception as exc:
        if (
            not retryable(exc, idempotent=idempotent)
            or budget.used >= budget.total
            or (policy.timeout is not None and time() - started >= policy.timeout)
        ):
            raise
        first = exc
    log_context = {"session_id": session_id} if session_id else {}
    delay = _delay(policy, 1, first)
    if _outlasts_deadline(delay):
        raise first
    logger.warning(
        EVENT_RETRY_SCHEDULED,
        provider=provider,
        operation=operation,
        attempt=1,
        wait=round(delay, 3),
        cause=type(first).__name__,
        status_code=getattr(first, "status_code", None),
        **log_context,
    )
    await sleep(delay)

    def stop(state: _t.RetryCallState) -> bool:
        if budget.exhausted or _outlasts_deadline(state.upcoming_sleep):
            return True
        return policy.timeout is not None and time() - started >= policy.timeout

    def before_sleep(state: _t.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            EVENT_RETRY_SCHEDULED,
            provider=provider,
            operation=operation,
            attempt=state.attempt_number + 1,
            wait=round(state.upcoming_sleep, 3),
            cause=type(exc).__name__,
            status_code=getattr(exc, "status_code", None),
            **log_context,
        )

    def before(state: _t.RetryCallState) -> None:
        budget.spend()

    retrying = _t.AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=_wait(policy, offset=1),
        retry=_t.retry_if_exception(lambda e: retryable(e, idempotent=idempotent)),
        before=before,
        before_sleep=before_sleep,
        reraise=True,
    )

    async def attempt() -> T:
        return await fn()

    return await retrying(attempt)
