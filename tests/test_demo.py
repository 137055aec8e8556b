"""
README's first command: the demo runs a session on each of the five providers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _tether() -> list[str]:
    script = shutil.which("tether") or str(Path(sys.executable).parent / "tether")
    return [script]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_runs_every_provider(backend: str) -> None:
    """
    `tether demo` creates, pings, works with and closes a session on each of the
    four emulated providers and on local (real code on this machine), all found
    through their entry points, fails over once, and exits 0.
    """
    result = subprocess.run(
        [*_tether(), "demo", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert 0 == result.returncode, result.stdout + result.stderr
    out = result.stdout
    for name in ("morpheus", "sandbox", "sipher", "relay", "local"):
        assert f"[{name}] active" in out
        assert f"[{name}] ping: alive" in out
        assert f"[{name}] closed" in out
    assert "[local] execute -> '42'" in out
    assert "[morpheus] failover: active" in out
    assert "failovers: 1" in out
    assert "demo finished: every session closed" in out


# Outside a checkout, with two emulators' dependencies (their providers'
# `emulator` extras) not installed: their modules fail to import.
_WITHOUT_TWO_EMULATORS = """
import sys
sys.modules["tether_relay.emulator"] = None
sys.modules["tether_sipher.emulator"] = None
from tether._cli import main
raise SystemExit(main(["demo", "--backend", sys.argv[1]]))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_skips_what_is_not_installed(backend: str, tmp_path: Path) -> None:
    """
    Run outside the repository where two emulators cannot be imported, `tether
    demo` demos the other two, says what it skipped and how to install it, and
    exits 0.
    """
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TWO_EMULATORS, backend],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert 0 == result.returncode, result.stdout + result.stderr
    out = result.stdout
    for name in ("relay", "sipher"):
        assert f"[{name}] skipped: not installed:" in out
        assert f"pip install 'tether-{name}[emulator]'" in out
    for name in ("morpheus", "sandbox"):
        assert f"[{name}] closed" in out
    assert out.rstrip().endswith(
        "demo finished: every session closed (skipped: relay, sipher)"
    )
