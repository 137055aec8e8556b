"""
What every command gets: its arguments, the settings, and a manager over the store.

Every command that touches sessions opens a :class:`~tether.SessionManager` that
keeps what it creates (``on_exit="keep"``) and runs no background pings, over a
durable store, so a session created by one invocation is there for the next.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from tether._cli._errors import UsageError
from tether._cli._settings import Settings, open_store
from tether._config import env_var
from tether._registry import default_registry
from tether.exceptions import SessionNotFoundError


if TYPE_CHECKING:
    from tether._manager import SessionManager
    from tether._session import Session


@attrs.frozen(kw_only=True)
class Context:
    """
    One invocation: the parsed arguments and the resolved settings.
    """

    args: argparse.Namespace
    settings: Settings

    @property
    def json(self) -> bool:
        return bool(self.args.json)


Command = Callable[[Context], int]


class AddCommand(Protocol):
    """
    Adds a sub-command to the ``tether`` parser and returns its parser.
    """

    def __call__(
        self, name: str, help_text: str, func: Command, *, add_help: bool = True
    ) -> argparse.ArgumentParser: ...


def manager_options(ctx: Context) -> dict[str, Any]:
    """
    The configuration a command's manager is built with.
    """
    config = {k: dict(v) for k, v in ctx.settings.providers.items()}
    # A provider configured only by TETHER_<NAME>_* variables is configured
    # too: name it, so that reconcile visits it.
    for name in default_registry().names():
        prefix = env_var(name, "")
        if any(key.startswith(prefix) for key in os.environ):
            config.setdefault(name, {})
    return {
        "config": config,
        "on_exit": "keep",
        "health_checks": False,
    }


def run(ctx: Context, fn: Callable[[SessionManager], Awaitable[int]]) -> int:
    """
    Run *fn* with a manager over the store, on the chosen event loop.
    """
    from tether._manager import SessionManager  # noqa: PLC0415

    store = open_store(ctx.settings.store_url)

    async def main() -> int:
        try:
            async with SessionManager(store=store, **manager_options(ctx)) as manager:
                return await fn(manager)
        finally:
            with anyio.CancelScope(shield=True):
                await store.aclose()

    return anyio.run(main, backend=ctx.args.backend)


async def resolve(manager: SessionManager, ref: str) -> Session:
    """
    A session by id, or by a unique prefix of its id.
    """
    try:
        return await manager.get(ref)
    except SessionNotFoundError:
        if len(ref) < 4:  # noqa: PLR2004 -- short prefixes match too much
            raise
    matches = [s for s in await manager.list() if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        msg = f"tether tracks no session {ref}"
        raise SessionNotFoundError(msg, session_id=ref)
    msg = f"{ref!r} matches {len(matches)} sessions; give more of the id"
    raise UsageError(msg)
