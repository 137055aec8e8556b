"""
``tether pools``, in a subprocess, over the SQLite store a live manager's pool
writes to: another process sees the pool by its sessions' label.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

import tether
from tether.testing import serve_asgi
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_cli_pools_5e6f7a8b"


def tether_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """
    The installed console script, with *env* only.
    """
    script = shutil.which("tether", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "tether._cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(name="emulator")
def _emulator() -> SandboxEmulator:
    """
    A sandbox emulator accepting the test key.
    """
    return SandboxEmulator(api_keys=(KEY,))


@pytest.fixture(name="served")
def _served(emulator: SandboxEmulator) -> Iterator[tuple[Any, str]]:
    """
    A background event loop, and the emulator served on it.
    """
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_asgi(emulator.app)) as server,
    ):
        yield portal, server.url


def test_pools_lists_a_live_managers_pool(
    served: tuple[Any, str], emulator: SandboxEmulator, tmp_path: Path
) -> None:
    """
    While a manager keeps a pool of two warm sessions in a SQLite store, the
    CLI in another process lists the pool with its two live sessions; a
    session outside any pool is not a pool. After the manager's exit the pool
    shows only with --all.
    """
    portal, url = served
    db = tmp_path / "state" / "tether" / "sessions.db"
    db.parent.mkdir(parents=True)
    keep = ("PATH", "SYSTEMROOT", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("COVERAGE")}
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        TETHER_SANDBOX_BASE_URL=url,
        TETHER_SANDBOX_API_KEY=KEY,
    )
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    with tether.SyncSessionManager(
        portal=portal,
        registry=registry,
        config={"sandbox": {"api_key": KEY, "base_url": url}},
        store=f"sqlite:///{db}",
        health_checks=False,
        environ={},
    ) as manager:
        manager.create("sandbox")
        pool = manager.pool(SandboxProvider, min_idle=2, name="builds")
        deadline = time.monotonic() + 30
        while pool.snapshot().idle < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        listed = tether_cli(env, "pools", "--json")
        human = tether_cli(env, "pools")
    after = tether_cli(env, "pools", "--json")
    everything = tether_cli(env, "pools", "--all", "--json")

    assert 0 == listed.returncode, listed.stderr
    assert [
        {
            "pool": "builds",
            "provider": "sandbox",
            "live": 2,
            "sessions": {"active": 2},
        }
    ] == json.loads(listed.stdout)
    assert "builds" in human.stdout
    assert "LIVE" in human.stdout
    assert [] == json.loads(after.stdout)
    assert ["builds"] == [p["pool"] for p in json.loads(everything.stdout)]
    assert 0 == json.loads(everything.stdout)[0]["live"]
    assert KEY not in listed.stdout + listed.stderr + human.stdout + human.stderr
