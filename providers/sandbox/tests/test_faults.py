"""
A create whose answer is lost after the service acted is never repeated blindly.

An ASGI middleware in front of the emulator lets the create happen, then drops
the answer (a reset) or replaces it with a gateway's 502 or 504; the emulator's
``live_sessions()`` is the ground truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import tether
from tether import SessionState
from tether.testing import (
    ASGIServer,
    LoseAnswer,
    ManualClock,
    serve_asgi,
)
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


@pytest.fixture(name="lose")
def _lose(emulator: SandboxEmulator) -> LoseAnswer:
    return LoseAnswer(emulator.app, "POST", "/v1/sessions/session", "502")


@pytest.fixture(name="server")
async def _server(lose: LoseAnswer) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(lose) as server:
        yield server


@pytest.mark.parametrize("how", ["502", "504", "reset"])
async def test_lost_create_answer_is_found_not_repeated(
    server: ASGIServer,
    clock: ManualClock,
    emulator: SandboxEmulator,
    lose: LoseAnswer,
    how: str,
) -> None:
    """
    The sandbox is found by tether's tag in its metadata, and tracked.
    """
    lose.how = how
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with tether.SessionManager(
        registry=registry,
        config={"sandbox": {"base_url": server.url, "api_key": KEY, "timeout": 5}},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
        on_exit="keep",
    ) as manager:
        session = await manager.create("sandbox")
        tracked = await manager.list(provider="sandbox")

    assert lose.lost == 1
    assert emulator.live_sessions() == {session.remote_id}
    assert [(s.remote_id, s.state) for s in tracked] == [
        (session.remote_id, SessionState.ACTIVE)
    ]
