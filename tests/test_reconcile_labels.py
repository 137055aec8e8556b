"""
Labels round-trip through the service: an adopted orphan keeps them.
"""

from __future__ import annotations

import tether
from tether.testing import FakeBackend, FakeProvider, FakeRemote, ManualClock


S = tether.SessionState


def manager(
    backend: FakeBackend, clock: ManualClock, store: tether.MemoryStore
) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)
    return tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": backend}},
        store=store,
        retry=tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        on_exit="keep",
        environ={},
    )


async def test_an_adopted_orphan_keeps_its_labels() -> None:
    """
    A tagged orphan whose service stored labels is adopted with them.
    """
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    backend.sessions["fake-orphan"] = FakeRemote(
        id="fake-orphan",
        tether_id="c" * 32,
        params={},
        created_at=clock.time(),
        expires_at=None,
        labels={"team": "ml", "job": "42"},
    )
    async with manager(backend, clock, tether.MemoryStore()) as m:
        report = await m.reconcile(orphans="adopt", grace=0)
        adopted = await m.get("c" * 32)

    assert {"adopted": 1} == report.counts
    assert S.ACTIVE == adopted.state
    assert {"team": "ml", "job": "42"} == dict(adopted.labels)


async def test_labels_survive_a_lost_store() -> None:
    """
    FakeProvider reports the labels a session was created with, so a session
    whose record was lost comes back, through reconcile, with its labels.
    """
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    async with manager(backend, clock, tether.MemoryStore()) as m:
        made = await m.create("fake", labels={"team": "ml"})
        listed = await m.provider("fake").list()
    assert [{"team": "ml"}] == [dict(r.labels) for r in listed]

    async with manager(backend, clock, tether.MemoryStore()) as m:
        await m.reconcile(orphans="adopt", grace=0)
        adopted = await m.get(made.id)
    assert (S.ACTIVE, {"team": "ml"}) == (adopted.state, dict(adopted.labels))
