"""
Testing with tether: fakes, emulator plumbing, and the provider conformance suite.

Everything here is public API for people who embed tether and for provider authors.
"""

from tether.testing._asgi import (
    ASGIApp,
    ASGIServer,
    DropConnection,
    RecordedRequest,
    serve_asgi,
)
from tether.testing._clock import ManualClock
from tether.testing._conformance import ConformanceTarget, ProviderConformanceTests
from tether.testing._fake import FakeBackend, FakeConfig, FakeProvider, FakeRemote
from tether.testing._faults import Fault, FaultInjector


__all__ = [
    "ASGIApp",
    "ASGIServer",
    "ConformanceTarget",
    "DropConnection",
    "FakeBackend",
    "FakeConfig",
    "FakeProvider",
    "FakeRemote",
    "Fault",
    "FaultInjector",
    "ManualClock",
    "ProviderConformanceTests",
    "RecordedRequest",
    "serve_asgi",
]
