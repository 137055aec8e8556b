"""
Slots on their own: each provider loaded, configured and given its client on
first use, once; its ping interval; the circuit breakers by key.
"""

from __future__ import annotations

import httpx
import pytest

import tether
from tether._lifecycle.runtime import ManagerState, ManagerStateError


async def test_a_provider_is_loaded_once_on_first_use(slots, runtime, clock):
    """
    get() loads and configures the provider the first time and returns the
    same slot after; loaded() never loads. The provider runs on the manager's
    clock.
    """
    assert slots.loaded("fake") is None
    slot = slots.get("fake")

    assert slot is slots.get("fake") is slots.loaded("fake")
    assert ["fake"] == slots.names()
    assert clock.time() == slot.provider.clock()
    assert slot.breaker is slots.breaker("fake")


async def test_the_ping_interval_comes_from_the_policy_then_the_provider(
    runtime_factory, slots_factory
):
    """
    The health policy's interval wins; without one, the provider's default
    (30 s for the fake); an unloaded provider's interval is the default asked.
    """
    with_policy = slots_factory(runtime_factory())
    without = slots_factory(runtime_factory(health=tether.HealthPolicy(jitter=0)))
    try:
        assert 10.0 == with_policy.get("fake").ping_interval
        assert 30.0 == without.get("fake").ping_interval
        assert 7.0 == without.ping_interval("other", default=7.0)
    finally:
        await with_policy.aclose()
        await without.aclose()


async def test_no_provider_loads_on_a_manager_that_is_not_open(
    runtime_factory, slots_factory
):
    """
    Loading a provider outside the manager's block is a ManagerStateError.
    """
    runtime = runtime_factory()
    runtime.state = ManagerState.UNOPENED
    slots = slots_factory(runtime)

    with pytest.raises(ManagerStateError):
        slots.get("fake")


async def test_a_client_factory_builds_each_client_and_aclose_closes_it(
    runtime, slots_factory
):
    """
    A custom client factory is called per provider with its options; the
    slot says "custom", and aclose() closes the client and forgets the slot.
    """
    made: list[str] = []

    def factory(name, options):
        made.append(name)
        return httpx.AsyncClient(base_url=options.base_url)

    slots = slots_factory(runtime, client_factory=factory)
    slot = slots.get("fake")
    assert (["fake"], "custom") == (made, slot.transport)

    await slots.aclose()

    assert slot.client.is_closed
    assert [] == slots.names()


async def test_breakers_are_kept_by_key(slots):
    """
    One breaker per key (a provider, or a failover candidate), made on demand.
    """
    a = slots.breaker("fake[size=1]")

    assert a is slots.breaker("fake[size=1]")
    assert a is not slots.breaker("fake")
    assert {"fake[size=1]", "fake"} == set(slots.breakers)
