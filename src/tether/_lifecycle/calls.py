"""
The policy layer: one provider call under the retry policy and the circuit
breakers. Every call the lifecycle makes to a provider goes through here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tether import _retry
from tether._events import BreakerState, CircuitBreaker, EventKind
from tether._lifecycle.bus import EventBus
from tether._lifecycle.runtime import Runtime
from tether._lifecycle.slots import Slot
from tether._log import (
    EVENT_BREAKER_CLOSED,
    EVENT_BREAKER_HALF_OPEN,
    EVENT_BREAKER_OPENED,
    logger,
)
from tether.exceptions import TransientProviderError


T = TypeVar("T")


class Calls:
    """
    Runs provider calls with retries (tenacity, via :mod:`tether._retry`) and
    keeps the breakers' books.
    """

    def __init__(self, runtime: Runtime, bus: EventBus) -> None:
        self._runtime = runtime
        self._bus = bus

    async def call(
        self,
        slot: Slot,
        fn: Callable[[], Awaitable[T]],
        *,
        operation: str,
        budget: _retry.AttemptBudget | None = None,
        idempotent: bool = True,
        session_id: str | None = None,
        breaker: bool = True,
    ) -> T:
        """
        ``await fn()``, retried where the policy and *idempotent* allow.

        A transient failure after the retries counts against the provider's
        breaker (unless *breaker* is false); a success closes it again.
        """
        runtime = self._runtime
        try:
            result = await _retry.call(
                fn,
                policy=runtime.retry,
                budget=budget,
                sleep=runtime.clock.sleep,
                time=runtime.clock.time,
                operation=operation,
                provider=slot.name,
                idempotent=idempotent,
                session_id=session_id,
            )
        except TransientProviderError:
            if breaker:
                self.failure(slot.breaker, slot.name)
            raise
        if breaker and (
            slot.breaker.failures or slot.breaker.state is not BreakerState.CLOSED
        ):
            self.success(slot.breaker, slot.name)
        return result

    def failure(self, breaker: CircuitBreaker, provider: str) -> None:
        if breaker.record_failure(self._runtime.clock.time()) is BreakerState.OPEN:
            logger.warning(EVENT_BREAKER_OPENED, provider=provider, breaker=breaker.key)
            self._bus.emit(
                EventKind.BREAKER_OPENED,
                provider=provider,
                data={"breaker": breaker.key},
            )

    def success(self, breaker: CircuitBreaker, provider: str) -> None:
        if breaker.record_success() is BreakerState.CLOSED:
            logger.info(EVENT_BREAKER_CLOSED, provider=provider, breaker=breaker.key)
            self._bus.emit(
                EventKind.BREAKER_CLOSED,
                provider=provider,
                data={"breaker": breaker.key},
            )

    def allow(self, breaker: CircuitBreaker, provider: str) -> bool:
        allowed, moved = breaker.allow(self._runtime.clock.time())
        if moved is BreakerState.HALF_OPEN:
            logger.info(EVENT_BREAKER_HALF_OPEN, provider=provider, breaker=breaker.key)
            self._bus.emit(
                EventKind.BREAKER_HALF_OPEN,
                provider=provider,
                data={"breaker": breaker.key},
            )
        return allowed
