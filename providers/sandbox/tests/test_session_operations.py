"""
The sandbox session's record, usage, app URL, files and egress policy as
handle operations, against the emulator on a real socket: typed results,
requests shaped as InstaVM's SDK sends them, bad input and ended sessions
refused before any request, service errors typed, lost answers retried.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

import tether
from tether.testing import ASGIServer, LoseAnswer, ManualClock, serve_asgi
from tether_sandbox import (
    AppURL,
    EgressPolicy,
    SandboxConfig,
    SandboxHandle,
    SandboxProvider,
    SessionInfo,
    SessionUsage,
    SyncSandboxHandle,
)
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"
OTHER_KEY = "instavm_sk_other_112233445566"
NEW_OPERATIONS = (
    "session_info",
    "usage",
    "app_url",
    "upload",
    "download",
    "egress",
    "set_egress",
)


class Recording:
    """
    Keeps every request (method, path, query, headers, body) and passes it on.
    """

    def __init__(self, app: Any) -> None:
        self.app, self.requests = app, list[dict[str, Any]]()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        self.requests.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": urllib.parse.parse_qs(scope["query_string"].decode()),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "body": raw,
            }
        )
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


@pytest.fixture(name="recording")
def _recording(emulator: SandboxEmulator) -> Recording:
    return Recording(emulator.app)


@contextlib.asynccontextmanager
async def managed(app: Any, clock: ManualClock) -> AsyncIterator[tether.SessionManager]:
    """
    A manager on *app* served on a real socket, retrying without waits.
    """
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with (
        serve_asgi(app) as server,
        tether.SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": KEY, "timeout": 5}},
            retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
            clock=clock,
            health_checks=False,
            environ={},
        ) as manager,
    ):
        yield manager


@pytest.fixture(name="manager")
async def _manager(
    recording: Recording, clock: ManualClock
) -> AsyncIterator[tether.SessionManager]:
    async with managed(recording, clock) as manager:
        yield manager


def multipart_fields(request: dict[str, Any]) -> dict[str, bytes]:
    """
    The fields of a recorded multipart body, by name.
    """
    boundary = request["headers"]["content-type"].split("boundary=")[1]
    fields = {}
    for part in request["body"].split(b"--" + boundary.encode())[1:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        fields[name] = value.removesuffix(b"\r\n")
    return fields


# -- the operations, end to end -----------------------------------------------


async def test_the_handle_offers_the_session_operations(
    manager: tether.SessionManager, clock: ManualClock
) -> None:
    """
    Through a SandboxHandle: a file uploaded is read by code and downloads
    byte for byte; the app URL, egress policy, usage and record come back as
    typed values reflecting the service's state.
    """
    policy = EgressPolicy(
        allow_https=True, allowed_domains=["pypi.org"], allowed_cidrs=["10.0.0.0/8"]
    )
    async with manager.session(SandboxProvider, vcpu_count=2) as sb:
        assert isinstance(sb, SandboxHandle)
        await sb.upload("in/data.bin", b"\x00\x01binary\r\n")
        await sb.upload("in/data.bin", b"\x00\x02binary\r\n")  # overwrites
        read = await sb.execute(command="cat /app/in/data.bin", language="bash")
        data = await sb.download("/app/in/data.bin")
        url = await sb.app_url(8080)
        initial = await sb.egress()
        stored = await sb.set_egress(policy)
        again = await sb.egress()
        await clock.advance(12)
        usage = await sb.usage()
        info = await sb.session_info()

    assert b"\x00\x02binary\r\n" == data
    assert "binary" in read.stdout
    assert isinstance(url, AppURL)
    assert (8080, "active", sb.remote_id) == (url.port, url.status, url.session_id)
    assert url.direct_url.startswith(f"https://{url.vm_id}-8080.")
    assert EgressPolicy() == initial
    assert policy == stored == again
    assert isinstance(usage, SessionUsage)
    assert (1, 12.0) == (usage.raw["executions"], usage.raw["vm_seconds"])
    assert isinstance(info, SessionInfo)
    assert sb.remote_id == info.session_id


async def test_declared_idempotency_lets_a_lost_upload_answer_be_retried(
    emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    The new operations are declared idempotent (reads, a file overwrite, a
    whole-policy replacement), so an upload whose answer was lost after the
    service stored it is sent again and succeeds; the file is there once.
    """
    lose = LoseAnswer(emulator.app, "POST", "/upload", "reset")
    async with managed(lose, clock) as manager, manager.session(SandboxProvider) as sb:
        await sb.upload("once.txt", b"once")
        data = await sb.download("once.txt")

    assert dict.fromkeys(NEW_OPERATIONS, True) == {
        name: SandboxProvider.operations[name].idempotent for name in NEW_OPERATIONS
    }
    assert 1 == lose.lost
    assert b"once" == data
    assert 1 == emulator.session(sb.remote_id or "")["vms_spawned"]


# -- what goes on the wire ----------------------------------------------------


async def test_requests_are_sent_as_the_sdk_sends_them(
    manager: tether.SessionManager, recording: Recording
) -> None:
    """
    Each operation uses the SDK's method, path and body keys: GETs on the
    session routes (``port`` in the query), ``/upload`` as multipart with
    ``file``, ``remote_path``, ``session_id`` and ``recursive="false"``,
    ``/download`` as a form with ``filename`` and ``session_id``, egress as
    JSON with the five policy fields. The key goes only in ``X-API-Key``.
    """
    async with manager.session(SandboxProvider) as sb:
        rid = sb.remote_id
        start = len(recording.requests)
        await sb.upload("/app/x.txt", b"x")
        await sb.download("/app/x.txt")
        await sb.app_url(3000)
        await sb.session_info()
        await sb.usage()
        await sb.egress()
        await sb.set_egress(EgressPolicy(allow_http=True))
        sent = recording.requests[start:]

    assert [
        ("POST", "/upload"),
        ("POST", "/download"),
        ("GET", f"/v1/sessions/app-url/{rid}"),
        ("GET", f"/v1/sessions/session/{rid}"),
        ("GET", f"/v1/sessions/usage/{rid}"),
        ("GET", f"/v1/egress/session/{rid}"),
        ("POST", f"/v1/egress/session/{rid}"),
    ] == [(r["method"], r["path"]) for r in sent]
    up, down, app, *_, set_egress = sent
    assert up["headers"]["content-type"].startswith("multipart/form-data")
    assert {
        "file": b"x",
        "remote_path": b"/app/x.txt",
        "session_id": rid.encode() if rid else b"",
        "recursive": b"false",
    } == multipart_fields(up)
    assert down["headers"]["content-type"].startswith(
        "application/x-www-form-urlencoded"
    )
    assert {"filename": ["/app/x.txt"], "session_id": [rid]} == urllib.parse.parse_qs(
        down["body"].decode()
    )
    assert {"port": ["3000"]} == app["query"]
    assert {
        "allow_package_managers",
        "allow_http",
        "allow_https",
        "allowed_domains",
        "allowed_cidrs",
    } == set(json.loads(set_egress["body"]))
    for request in sent:
        assert KEY == request["headers"]["x-api-key"]
        assert KEY.encode() not in request["body"]


# -- refusals before any request ----------------------------------------------

BAD_INPUT: list[tuple[str, Callable[[SandboxHandle], Awaitable[Any]]]] = [
    ("port", lambda sb: sb.app_url(0)),
    ("port", lambda sb: sb.app_url(65_536)),
    ("port", lambda sb: sb.app_url(True)),
    ("port", lambda sb: sb.app_url(80.5)),  # type: ignore[arg-type]
    ("path", lambda sb: sb.upload("", b"x")),
    ("path", lambda sb: sb.upload("dir/", b"x")),
    ("path", lambda sb: sb.download("a\x00b")),
    ("path", lambda sb: sb.download("/app/..")),
    ("data", lambda sb: sb.upload("a.txt", "text")),  # type: ignore[arg-type]
    ("policy", lambda sb: sb.set_egress({"allow_http": True})),  # type: ignore[arg-type]
    (
        "allowed_cidrs",
        lambda sb: sb.set_egress(EgressPolicy(allowed_cidrs=["10.0.0.0/33"])),
    ),
    (
        "allowed_domains",
        lambda sb: sb.set_egress(EgressPolicy(allowed_domains=["https://x.com"])),
    ),
    (
        "allow_http",
        lambda sb: sb.set_egress(EgressPolicy(allow_http="yes")),  # type: ignore[arg-type]
    ),
]


@pytest.mark.parametrize(("field", "call"), BAD_INPUT)
async def test_bad_input_is_a_typed_error_before_any_request(
    manager: tether.SessionManager,
    recording: Recording,
    field: str,
    call: Callable[[SandboxHandle], Awaitable[Any]],
) -> None:
    """
    A bad port, path, payload or egress policy raises InvalidParameterError
    naming the field, and nothing reaches the service.
    """
    async with manager.session(SandboxProvider) as sb:
        before = len(recording.requests)
        with pytest.raises(tether.InvalidParameterError) as caught:
            await call(sb)
        after = len(recording.requests)

    assert before == after
    assert field == caught.value.field


ALL_CALLS: list[Callable[[SandboxHandle], Awaitable[Any]]] = [
    lambda sb: sb.session_info(),
    lambda sb: sb.usage(),
    lambda sb: sb.app_url(),
    lambda sb: sb.upload("a.txt", b"a"),
    lambda sb: sb.download("a.txt"),
    lambda sb: sb.egress(),
    lambda sb: sb.set_egress(EgressPolicy()),
]


@pytest.mark.parametrize("call", ALL_CALLS)
async def test_an_ended_session_refuses_before_any_request(
    manager: tether.SessionManager,
    recording: Recording,
    call: Callable[[SandboxHandle], Awaitable[Any]],
) -> None:
    """
    After its block the handle's session is CLOSED: each operation raises
    SessionEndedError and sends nothing.
    """
    async with manager.session(SandboxProvider) as sb:
        pass
    before = len(recording.requests)

    with pytest.raises(tether.SessionEndedError):
        await call(sb)

    assert before == len(recording.requests)


# -- service errors -----------------------------------------------------------


async def test_service_refusals_are_typed(
    manager: tether.SessionManager, server: ASGIServer
) -> None:
    """
    An app URL before any VM and a missing file are RemoteNotFoundError; a
    wrong key, or another key's session, is AuthError.
    """

    async def provider_with(key: str) -> tuple[SandboxProvider, httpx.AsyncClient]:
        config = SandboxConfig(base_url=server.url, api_key=key, timeout=5)
        options = SandboxProvider.client_options(config)
        client = httpx.AsyncClient(
            base_url=options.base_url, headers=dict(options.headers), timeout=5
        )
        return SandboxProvider(config, client=client, name="sandbox"), client

    async with manager.session(SandboxProvider) as sb:
        with pytest.raises(tether.RemoteNotFoundError):
            await sb.app_url(3000)
        with pytest.raises(tether.RemoteNotFoundError):
            await sb.download("missing.txt")
        for key, status in (("instavm_sk_wrong_000", 401), (OTHER_KEY, 403)):
            stranger, client = await provider_with(key)
            async with client:
                with pytest.raises(tether.AuthError) as caught:
                    await stranger.usage(sb.session)
            assert status == caught.value.status_code


# -- from synchronous code ----------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_sync_handle_offers_the_same_operations(loop: str) -> None:
    """
    SyncSandboxHandle has each operation as a blocking call with the same
    results, and refuses once its block ended.
    """
    emulator = SandboxEmulator(api_keys=(KEY,))
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(tether.SyncSessionManager(backend=loop))  # type: ignore[arg-type]
        server = stack.enter_context(
            probe.portal.wrap_async_context_manager(serve_asgi(emulator.app))
        )
        manager = stack.enter_context(
            tether.SyncSessionManager(
                portal=probe.portal,
                registry=registry,
                config={"sandbox": {"base_url": server.url, "api_key": KEY}},
                health_checks=False,
                environ={},
            )
        )
        with manager.session(SandboxProvider) as sb:
            assert isinstance(sb, SyncSandboxHandle)
            sb.upload("s.txt", b"sync")
            data = sb.download("s.txt")
            url = sb.app_url(9000)
            policy = sb.set_egress(EgressPolicy(allow_package_managers=True))
            read = sb.egress()
            usage = sb.usage()
            info = sb.session_info()
        with pytest.raises(tether.SessionEndedError):
            sb.download("s.txt")

    assert b"sync" == data
    assert 9000 == url.port
    assert policy == read == EgressPolicy(allow_package_managers=True)
    assert 0 == usage.raw["executions"]
    assert sb.remote_id == info.session_id
