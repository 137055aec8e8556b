"""
The Sipher emulator as a plugin: the ``tether.emulators`` entry point ``sipher``.

``tether emulate sipher`` serves it; ``tether demo`` sends a request bound to a
session on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tether.testing import DemoScript, Emulator


if TYPE_CHECKING:
    from tether import Session, SessionManager
    from tether_sipher import SipherProvider


async def _work(manager: SessionManager, session: Session) -> str:
    provider = cast("SipherProvider", manager.provider(session.provider))
    response = await provider.session_request(
        session,
        "POST",
        "/v1/backends/compare",
        json={"operation": "stealth_privacy"},
    )
    return f"request with X-Session-Id -> HTTP {response.status_code}"


def emulation() -> Emulator:
    """
    A fresh Sipher emulator with its built-in demo keys; the client uses the pro one.
    """
    # Starlette (the ``emulator`` extra) is needed only once an emulator is built.
    from tether_sipher.emulator import PRO_KEY, SipherEmulator  # noqa: PLC0415

    emulator = SipherEmulator()
    return Emulator(
        app=emulator.app,
        config={"api_key": PRO_KEY},
        demo=DemoScript(
            params={"chain": "solana", "privacy_level": "shielded"},
            update={"privacy_level": "maximum"},
            lifetime=600,
            work=_work,
        ),
    )
