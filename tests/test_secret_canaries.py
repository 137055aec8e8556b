"""
Secret canaries, end to end: a key the service quotes back in its error shows nowhere.

Many services answer a bad key with a message that quotes it ("Invalid API key
instavm_sk_..."). Here the sandbox and relay emulators do, through a middleware
that rewrites their refusals, and the key the manager holds must then be absent
from the exception (str, repr, body), the SQLite store's files (the database
and its write-ahead log), OpenTelemetry's spans (attributes and exception
events) and every captured log line.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import tether
from tether.exceptions import AuthError
from tether.otel import OpenTelemetryInstrumentation
from tether.testing import serve_asgi
from tether.testing._asgi import ASGIApp, Message, Receive, Scope, Send
from tether_relay import RelayProvider
from tether_relay.emulator import RelayEmulator
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


# The keys the emulators accept, and the wrong ones the managers hold (the
# canaries): each long and unlike any secret-shaped pattern tether masks.
SANDBOX_KEY = "instavm_sk_canary_right_0123456789"
SANDBOX_CANARY = "instavm_sk_canary_wrong_9876543210"
RELAY_TOKEN = "relay-canary-right-token-0123456789"
RELAY_CANARY = "relay-canary-wrong-token-9876543210"


def _sandbox_key(scope: Scope) -> str:
    return _header(scope, b"x-api-key")


def _relay_token(scope: Scope) -> str:
    return _header(scope, b"authorization").partition(" ")[2].strip()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode()
    return ""


@attrs.define
class QuoteKey:
    """
    ASGI middleware: the emulator's 401 and 403 answers quote the key the
    request carried, as many services do, in the service's own envelope
    (the body's *field*).
    """

    app: ASGIApp
    key_of: Callable[[Scope], str]
    field: str
    quoted: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = self.key_of(scope)
        refused = False

        async def quoting(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] in (
                401,
                403,
            ):
                refused = True
                self.quoted += 1
                body = json.dumps({self.field: f"Invalid API key {key}"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": message["status"],
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            if refused:
                return  # the emulator's own body: replaced above
            await send(message)

        await self.app(scope, receive, quoting)


@attrs.frozen
class Case:
    name: str
    provider: type[Any]
    emulator: Callable[[], Any]
    key_of: Callable[[Scope], str]
    field: str
    config: Callable[[str], dict[str, Any]]
    params: dict[str, Any]


CASES = [
    Case(
        name="sandbox",
        provider=SandboxProvider,
        emulator=lambda: SandboxEmulator(api_keys=(SANDBOX_KEY,)),
        key_of=_sandbox_key,
        field="detail",
        config=lambda url: {"base_url": url, "api_key": SANDBOX_CANARY},
        params={},
    ),
    Case(
        name="relay",
        provider=RelayProvider,
        emulator=lambda: RelayEmulator(tokens=(RELAY_TOKEN,), ready_delay=0.0),
        key_of=_relay_token,
        field="message",
        config=lambda url: {"base_url": url, "api_token": RELAY_CANARY},
        params={"users": ["1.1.1.1"]},
    ),
]
CANARIES = {"sandbox": SANDBOX_CANARY, "relay": RELAY_CANARY}


def _everything_in(path: Path) -> bytes:
    # The database and whatever SQLite keeps beside it (-wal, -shm, -journal).
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_quoted_key_shows_nowhere(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A create the service refuses with a message quoting the manager's key:
    the key is masked in the AuthError's str, repr, body and traceback, in
    the FAILED record the SQLite file holds (database and write-ahead log),
    in every span's attributes and exception events, and in every log line;
    the masked message still says what happened.
    """
    canary = CANARIES[case.name]
    caplog.set_level(logging.DEBUG)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = OpenTelemetryInstrumentation(
        tracer_provider=tracer_provider, meter_provider=MeterProvider()
    )
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register(case.name, case.provider)
    db = tmp_path / "sessions.db"
    emulator = case.emulator()
    app = QuoteKey(emulator.app, case.key_of, case.field)

    async with (
        serve_asgi(app) as server,
        tether.SessionManager(
            registry=registry,
            config={case.name: case.config(server.url)},
            store=f"sqlite:///{db}",
            retry=tether.RetryPolicy(attempts=1),
            health_checks=False,
            instrumentation=instrumentation,
            environ={},
        ) as manager,
    ):
        with pytest.raises(AuthError) as info:
            await manager.create(case.name, **case.params)
        [record] = await manager.list()
        stored = _everything_in(db)  # while the manager holds it open

    error = info.value
    spans = exporter.get_finished_spans()
    assert app.quoted >= 1
    assert 0 == len(emulator.live_sessions())
    assert tether.SessionState.FAILED == record.state
    assert "Invalid API key ***" in (record.error or "")
    assert "Invalid API key ***" in str(error.body)
    assert spans
    assert any(event.name == "exception" for span in spans for event in span.events)
    assert "Invalid API key ***" in "\n".join(span.to_json() for span in spans)
    texts = {
        "str": str(error),
        "repr": repr(error),
        "body": repr(error.body),
        "args": repr(error.args),
        "traceback": "".join(traceback.format_exception(error)),
        "record": repr(record.to_dict()),
        "spans": "\n".join(span.to_json() for span in spans),
        "logs": caplog.text,
    }
    assert [] == [where for where, text in texts.items() if canary in text]
    assert canary.encode() not in stored
    assert canary.encode() not in _everything_in(db)
