"""
Errors: exceptions from the manager's block.
"""

import anyio

import tether
from tether.exceptions import SessionNotFoundError
from tether.testing import FakeBackend, FakeProvider, ManualClock


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    caught: list[SessionNotFoundError] = []
    try:
        async with tether.SessionManager(
            registry=registry, config={"fake": {"backend": backend}}, clock=clock
        ) as manager:
            await manager.get("no-such-id")
    except* SessionNotFoundError as group:
        # The group's own errors (it may also hold groups, from nested task groups).
        caught = [e for e in group.exceptions if isinstance(e, SessionNotFoundError)]
    assert [e.session_id for e in caught] == ["no-such-id"]


if __name__ == "__main__":
    anyio.run(main)
