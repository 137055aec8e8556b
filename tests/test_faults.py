"""
FaultInjector: seeded rates, and schedules that guarantee faults.
"""

from __future__ import annotations

import httpx
import pytest

from tether.testing import Fault, FaultInjector, serve_asgi


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _statuses(faults: FaultInjector, n: int) -> list[int]:
    async with serve_asgi(faults) as server, httpx.AsyncClient() as client:
        return [(await client.get(server.url)).status_code for _ in range(n)]


async def test_a_rate_may_inject_nothing() -> None:
    """
    The trap ``every`` exists for: seed 0 at rate 0.3 fails neither of two
    requests.
    """
    faults = FaultInjector(_ok, rate=0.3, seed=0, kinds={Fault.SERVER_ERROR})

    statuses = await _statuses(faults, 2)

    assert [200, 200] == statuses
    assert 0 == sum(faults.injected.values())
    assert 2 == faults.seen


@pytest.mark.parametrize("seed", [0, 1, 7])
async def test_every_fails_on_schedule_whatever_the_seed(seed: int) -> None:
    """
    ``every=3`` fails the third and sixth requests, for any seed.
    """
    faults = FaultInjector(_ok, every=3, seed=seed, kinds={Fault.SERVER_ERROR})

    statuses = await _statuses(faults, 6)

    assert [200, 200, 503, 200, 200, 503] == statuses
    assert 2 == faults.injected[Fault.SERVER_ERROR]


async def test_every_counts_only_requests_it_applies_to() -> None:
    """
    Requests that ``applies_to`` lets pass neither fail nor count.
    """
    faults = FaultInjector(
        _ok,
        every=1,
        kinds={Fault.SERVER_ERROR},
        applies_to=lambda scope: scope["path"] == "/faulty",
    )

    async with serve_asgi(faults) as server, httpx.AsyncClient() as client:
        clean = (await client.get(f"{server.url}/clean")).status_code
        faulty = (await client.get(f"{server.url}/faulty")).status_code

    assert (200, 503) == (clean, faulty)
    assert 1 == faults.seen


@pytest.mark.parametrize(
    "kwargs", [{"every": -1}, {"every": 2, "rate": 0.5}], ids=["negative", "both"]
)
def test_bad_schedules_are_refused(kwargs: dict[str, float]) -> None:
    """
    A negative schedule, or a schedule and a rate at once, is a ValueError.
    """
    with pytest.raises(ValueError, match="every"):
        FaultInjector(_ok, **kwargs)  # type: ignore[arg-type]
