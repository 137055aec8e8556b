"""
The local provider in ``tether demo``: the ``tether.demos`` entry point ``local``.

There is no emulator: the demo session is a real kernel on this machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tether.testing import DemoScript


if TYPE_CHECKING:
    from tether import Session, SessionManager
    from tether_local import LocalProvider


async def _work(manager: SessionManager, session: Session) -> str:
    provider = cast("LocalProvider", manager.provider(session.provider))
    await provider.execute(session, "x = 41")
    result = await provider.execute(session, "print(x + 1)")
    return f"execute -> {result.stdout.strip()!r} (real code, state kept)"


def demo() -> DemoScript:
    """
    A session with 256 MiB, isolated when bubblewrap is installed.
    """
    import shutil  # noqa: PLC0415

    isolation = "bwrap" if shutil.which("bwrap") else "none"
    return DemoScript(
        params={"memory_mb": 256, "isolation": isolation}, lifetime=120, work=_work
    )
