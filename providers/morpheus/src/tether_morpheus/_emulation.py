"""
The Morpheus emulator as a plugin: the ``tether.emulators`` entry point ``morpheus``.

``tether emulate morpheus`` serves it; ``tether demo`` chats on a session on it,
then fails over when the provider behind the best bid refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

from tether import FailoverPolicy
from tether.testing import DemoScript, Emulator


if TYPE_CHECKING:
    from tether import Session, SessionManager
    from tether_morpheus import MorpheusProvider


#: The demo key: the emulator accepts it; it is not a real Morpheus key.
DEMO_API_KEY: Final = (
    "sk-DeMo01.0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
)

_MODEL: Final = "llama-3.3-70b"
_FALLBACK_MODEL: Final = "mistral-31-24b"


async def _work(manager: SessionManager, session: Session) -> str:
    provider = cast("MorpheusProvider", manager.provider(session.provider))
    reply = await provider.chat(session, [{"role": "user", "content": "hello"}])
    return f"chat -> {reply.content!r}"


def emulation() -> Emulator:
    """
    A fresh Morpheus gateway emulator that accepts :data:`DEMO_API_KEY`.
    """
    # Starlette (the ``emulator`` extra) is needed only once an emulator is built.
    from tether_morpheus.emulator import MorpheusEmulator  # noqa: PLC0415

    emulator = MorpheusEmulator(api_keys=[DEMO_API_KEY])

    async def failover(manager: SessionManager) -> FailoverPolicy:
        # The provider behind the best bid refuses: the session lands on the next.
        best = emulator.bids_for(_MODEL)[0]
        emulator.fail_provider(emulator.bid_provider(best))
        provider = cast("MorpheusProvider", manager.provider("morpheus"))
        candidates = await provider.failover_candidates(
            _MODEL, fallback_models=[_FALLBACK_MODEL]
        )
        return FailoverPolicy(candidates=candidates, attempts_per_candidate=1)

    return Emulator(
        app=emulator.app,
        config={"api_key": DEMO_API_KEY},
        demo=DemoScript(
            params={"model": _MODEL}, lifetime=600, work=_work, failover=failover
        ),
    )
