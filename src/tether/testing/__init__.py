"""
Testing with tether: fakes, emulator plumbing, and the provider conformance suite.

Everything here is public API for people who embed tether and for provider authors.
"""

from typing import TYPE_CHECKING, Any

from tether.testing._asgi import (
    ASGIApp,
    ASGIServer,
    DropConnection,
    RecordedRequest,
    serve_asgi,
)
from tether.testing._asgi import Message as ASGIMessage
from tether.testing._asgi import Receive as ASGIReceive
from tether.testing._asgi import Scope as ASGIScope
from tether.testing._asgi import Send as ASGISend
from tether.testing._clock import ManualClock
from tether.testing._emulation import DemoScript, Emulator, EmulatorFactory
from tether.testing._fake import FakeBackend, FakeConfig, FakeProvider, FakeRemote
from tether.testing._faults import Fault, FaultInjector, LoseAnswer


if TYPE_CHECKING:
    from tether.testing._conformance import (
        ConformanceTarget,
        ProviderConformanceTests,
    )


__all__ = [
    "ASGIApp",
    "ASGIMessage",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "ASGIServer",
    "ConformanceTarget",
    "DemoScript",
    "DropConnection",
    "Emulator",
    "EmulatorFactory",
    "FakeBackend",
    "FakeConfig",
    "FakeProvider",
    "FakeRemote",
    "Fault",
    "FaultInjector",
    "LoseAnswer",
    "ManualClock",
    "ProviderConformanceTests",
    "RecordedRequest",
    "serve_asgi",
]


def __getattr__(name: str) -> Any:
    # The conformance suite needs pytest; the rest of the kit does not.
    if name in ("ConformanceTarget", "ProviderConformanceTests"):
        from tether.testing import _conformance  # noqa: PLC0415

        return getattr(_conformance, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
