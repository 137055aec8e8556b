"""
Creator, on a real manager: validation before any request, the write-ahead
record, failover across candidates, and re-creating a LOST session.
"""

from __future__ import annotations

import anyio
import pytest

import tether
from tether.exceptions import AuthError, ConfigError, InvalidParameterError


S = tether.SessionState
K = tether.EventKind


def policy(*providers: str, **kw) -> tether.FailoverPolicy:
    return tether.FailoverPolicy(
        candidates=[tether.Candidate(provider=p) for p in providers], **kw
    )


async def create(manager, provider, **kw):
    return await manager._creator.create(
        provider,
        labels=kw.pop("labels", None),
        lifetime=kw.pop("lifetime", None),
        keepalive=kw.pop("keepalive", False),
        params=kw,
    )


async def test_the_intent_is_recorded_before_the_service_hears_of_it(
    make, backend, store, recording
):
    """
    Write-ahead: while the service works on the create, the store already
    holds the record, CREATING, with its credential's fingerprint; the answer
    makes it ACTIVE with the service's id, and CREATED is emitted.
    """
    entered, release = backend.gate("create")
    created: list[tether.Session] = []
    async with make() as manager, recording(manager) as rec:
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                created.append(await create(manager, "fake", size=2))

            tg.start_soon(go)
            await entered.wait()
            try:
                during = await store.list()
                made_yet = backend.live_ids()
            finally:
                release.set()  # a failure here must not hold the create
        after = await store.get(created[0].id)

    assert set() == made_yet
    assert [S.CREATING] == [r.state for r in during]
    assert during[0].id == created[0].id
    assert during[0].remote_id is None
    assert during[0].credential is not None
    assert (S.ACTIVE, {"size": 2}) == (after.state, dict(after.params))
    assert after.remote_id in backend.sessions
    assert [K.CREATED] == rec.kinds()


async def test_every_candidate_is_checked_before_anything_is_sent(make, backend, other):
    """
    With a failover policy, a bad parameter on any candidate fails the create
    before a record is written or a request sent.
    """
    bad = tether.FailoverPolicy(
        candidates=[
            tether.Candidate(provider="fake"),
            tether.Candidate(provider="other", params={"size": 99}),
        ]
    )
    async with make() as manager:
        with pytest.raises(InvalidParameterError):
            await create(manager, bad)
        with pytest.raises(ConfigError, match="on each Candidate"):
            await create(manager, policy("fake"), size=1)
        records = await manager.list()

    assert [] == records
    assert 0 == backend.calls["create"] + other.calls["create"]


@pytest.mark.parametrize(
    "kw",
    [
        {"lifetime": -1},
        {"lifetime": float("nan")},
        {"labels": {"a": 1}},
        {"keepalive": "yes"},
        {"keepalive": True},  # no lifetime to renew by
    ],
)
async def test_bad_generic_arguments_send_nothing(make, backend, kw):
    """
    Lifetime, labels and keepalive are checked before anything is written or sent.
    """
    async with make() as manager:
        with pytest.raises(InvalidParameterError):
            await create(manager, "fake", **kw)
        records = await manager.list()

    assert ([], 0) == (records, backend.calls["create"])


async def test_failover_moves_on_after_a_candidates_share_of_attempts(
    make, backend, other, recording
):
    """
    A candidate gets at most ``attempts_per_candidate`` attempts; then the next
    is tried (a FAILOVER event), and the session is tracked with its policy and
    the candidate it was made on. A plain create is tracked without one.
    """
    backend.fail("create", times=5)
    chosen = policy("fake", "other", attempts_per_candidate=2)
    async with make() as manager, recording(manager) as rec:
        s = await create(manager, chosen)
        tracked = manager._runtime.tracked[s.id]
        plain = await create(manager, "other")
        plain_tracked = manager._runtime.tracked[plain.id]
        records = await manager.list()

    assert ("other", 2) == (s.provider, backend.calls["create"])
    assert (chosen, chosen.candidates[1]) == (tracked.failover, tracked.candidate)
    assert plain_tracked.failover is None
    assert [("fake", "other")] == [
        (e.data["from"], e.data["to"]) for e in rec.of(K.FAILOVER)
    ]
    # The failed candidate's write-ahead record was settled FAILED.
    assert sorted([S.FAILED, S.ACTIVE, S.ACTIVE]) == sorted(r.state for r in records)


async def test_a_permanent_failure_is_recorded_failed(make, backend, recording):
    """
    A create the service refuses is raised, its record FAILED with the reason,
    a CREATE_FAILED event emitted, and nothing tracked.
    """
    backend.fail("create", "auth")
    async with make() as manager, recording(manager) as rec:
        with pytest.raises(AuthError):
            await create(manager, "fake")
        (record,) = await manager.list()
        tracked = dict(manager._runtime.tracked)

    assert S.FAILED == record.state
    assert "AuthError" in (record.error or "")
    assert ({}, 1) == (tracked, backend.calls["create"])
    assert [(K.CREATE_FAILED, S.CREATING)] == [
        (e.kind, e.previous_state) for e in rec.events
    ]


async def test_recreate_skips_the_candidate_that_lost_it(make, backend, other):
    """
    A LOST session is replaced on another candidate than the one it was made
    on; the lost record names its replacement.
    """
    async with make() as manager:
        s = await create(manager, policy("fake", "other", recreate_lost=True))
        tracked = manager._runtime.tracked[s.id]
        lost = await manager._records.mutate(s.id, lambda c: c.transition(S.LOST))
        new = await manager._creator.recreate(lost, tracked)
        old = await manager.get(s.id)

    assert new is not None
    assert ("fake", "other") == (s.provider, new.provider)
    assert new.id == old.data["replaced_by"]


async def test_recreate_with_no_candidate_left_gives_up_quietly(make, backend):
    """
    When no candidate but the lost one remains, recreate returns None and the
    lost record names no replacement.
    """
    async with make() as manager:
        s = await create(manager, policy("fake", recreate_lost=True))
        tracked = manager._runtime.tracked[s.id]
        lost = await manager._records.mutate(s.id, lambda c: c.transition(S.LOST))
        new = await manager._creator.recreate(lost, tracked)
        old = await manager.get(s.id)

    assert new is None
    assert "replaced_by" not in old.data
    assert 1 == backend.calls["create"]
