"""
Logging: where tether's events go.
"""

import logging

import anyio
import structlog

import tether
from tether.testing import FakeBackend, FakeProvider, ManualClock


records: list[logging.LogRecord] = []


class Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        records.append(record)


async def main() -> None:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", FakeProvider)

    structlog.reset_defaults()  # an app that configured nothing
    handler = Keep(level=logging.INFO)
    logging.getLogger("tether").addHandler(handler)
    logging.getLogger("tether").setLevel(logging.INFO)
    try:
        async with tether.SessionManager(
            registry=registry, config={"fake": {"backend": backend}}, clock=clock
        ) as manager:
            await manager.create("fake")
    finally:
        logging.getLogger("tether").removeHandler(handler)
    # Attributes of their own, as logging's `extra` sets them: read with getattr.
    created = [
        r
        for r in records
        if getattr(r, "tether_event", None) == "tether.session.created"
    ]
    assert created
    assert getattr(created[0], "tether_fields", {})["provider"] == "fake"


if __name__ == "__main__":
    anyio.run(main)
