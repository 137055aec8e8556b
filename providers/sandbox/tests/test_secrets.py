"""
Secrets a caller hands the sandbox provider never reach stored state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

import tether
from tether.testing import ASGIServer, ManualClock
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


if TYPE_CHECKING:
    from pathlib import Path


KEY = "instavm_sk_test_9f8e7d6c5b4a"
OPENAI = "sk-proj-canary-0123456789abcdef"


async def test_environment_values_are_sent_but_never_stored(
    server: ASGIServer, emulator: SandboxEmulator, clock: ManualClock, tmp_path: Path
) -> None:
    """
    ``env`` values go to the service, while the record (and so the SQLite
    file) keeps only their names.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    path = tmp_path / "sessions.db"
    async with tether.SessionManager(
        registry=registry,
        config={"sandbox": {"base_url": server.url, "api_key": KEY, "timeout": 5}},
        store=f"sqlite:///{path}",
        clock=clock,
        health_checks=False,
        on_exit="keep",
        environ={},
    ) as manager:
        session = await manager.create("sandbox", env={"OPENAI_API_KEY": OPENAI})
        stored = await manager.get(session.id)

    assert {"OPENAI_API_KEY": OPENAI} == emulator.session(session.remote_id)["env"]
    assert {"OPENAI_API_KEY": "***"} == stored.params["env"]
    async for file in anyio.Path(tmp_path).iterdir():
        assert OPENAI.encode() not in await file.read_bytes(), file.name
