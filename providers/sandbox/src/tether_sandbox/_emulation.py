"""
The sandbox emulator as a plugin: the ``tether.emulators`` entry point ``sandbox``.

``tether emulate sandbox`` serves it; ``tether demo`` runs code in a session on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

from tether.testing import DemoScript, Emulator


if TYPE_CHECKING:
    from tether import Session, SessionManager
    from tether_sandbox import SandboxProvider


#: The demo key: the emulator accepts it; it is not a real InstaVM key.
DEMO_API_KEY: Final = "instavm_sk_demo_0123456789"


async def _work(manager: SessionManager, session: Session) -> str:
    provider = cast("SandboxProvider", manager.provider(session.provider))
    result = await provider.execute(session, "print('hello from the sandbox')")
    return f"execute -> {result.stdout.strip()!r}"


def emulation() -> Emulator:
    """
    A fresh InstaVM emulator that accepts :data:`DEMO_API_KEY`.
    """
    # Starlette (the ``emulator`` extra) is needed only once an emulator is built.
    from tether_sandbox.emulator import SandboxEmulator  # noqa: PLC0415

    emulator = SandboxEmulator(api_keys=(DEMO_API_KEY,))
    return Emulator(
        app=emulator.app,
        config={"api_key": DEMO_API_KEY},
        demo=DemoScript(
            params={"vcpu_count": 2, "memory_mb": 512}, lifetime=300, work=_work
        ),
    )
