"""
The relay emulator as a plugin: the ``tether.emulators`` entry point ``relay``.

``tether emulate relay`` serves it; ``tether demo`` authorizes a user on a
session on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

from tether.testing import DemoScript, Emulator


if TYPE_CHECKING:
    from tether import Session, SessionManager
    from tether_relay import RelayProvider


#: The demo token: the emulator accepts it; it is not a real Edgegap token.
DEMO_API_TOKEN: Final = "relay-demo-token-0123456789"  # noqa: S105

# Sessions become ready quickly, so a local client does not wait long.
_READY_DELAY: Final = 0.2


async def _work(manager: SessionManager, session: Session) -> str:
    provider = cast("RelayProvider", manager.provider(session.provider))
    user = await provider.authorize_user(session, "9.9.9.9")
    return f"authorized 9.9.9.9 -> {user!r}"


def emulation() -> Emulator:
    """
    A fresh relay emulator that accepts :data:`DEMO_API_TOKEN`.
    """
    # Starlette (the ``emulator`` extra) is needed only once an emulator is built.
    from tether_relay.emulator import RelayEmulator  # noqa: PLC0415

    emulator = RelayEmulator(tokens=(DEMO_API_TOKEN,), ready_delay=_READY_DELAY)
    return Emulator(
        app=emulator.app,
        config={"api_token": DEMO_API_TOKEN},
        demo=DemoScript(
            params={"users": ["1.1.1.1", "8.8.8.8"]},
            update={"revoke": ["8.8.8.8"]},
            lifetime=120,
            work=_work,
        ),
    )
