"""
Both transports (httpx's own, and aiohttp under asyncio) behave alike.

Everything runs over real loopback sockets against the sandbox emulator or a
tiny ASGI app, so what is tested is the wire: statuses, streamed bodies,
timeouts, dropped connections and cancellation.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import tether
from tether._transport import TransportName, build_client, pick_transport
from tether.abc import ClientOptions
from tether.exceptions import OutcomeUnknownError, ProviderUnavailableError
from tether.testing import DropConnection, Fault, serve_asgi


pytest.importorskip("tether_sandbox")
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_transport_0123456789"
HAS_AIOHTTP = importlib.util.find_spec("httpx_aiohttp") is not None


@pytest.fixture(
    name="transport",
    params=[
        pytest.param("httpx", id="httpx"),
        pytest.param(
            "aiohttp",
            id="aiohttp",
            marks=pytest.mark.skipif(
                not HAS_AIOHTTP, reason="the fast extra is not installed"
            ),
        ),
    ],
)
def _transport(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    """
    Each transport; aiohttp only under asyncio.
    """
    if request.param == "aiohttp" and anyio_backend != "asyncio":
        pytest.skip("aiohttp runs only on asyncio")
    return str(request.param)


@pytest.fixture(name="emulator")
def _emulator() -> SandboxEmulator:
    """
    The sandbox emulator, accepting the test key.
    """
    return SandboxEmulator(api_keys=(KEY,))


@pytest.fixture(name="url")
async def _url(emulator: SandboxEmulator) -> AsyncIterator[str]:
    """
    The emulator served on a loopback port.
    """
    async with serve_asgi(emulator.app) as server:
        yield server.url


def _client(
    transport: str, url: str, *, timeout: float = 5.0, **kwargs: Any
) -> httpx.AsyncClient:
    options = ClientOptions(base_url=url, headers={"X-API-Key": KEY}, timeout=timeout)
    chosen: TransportName = "aiohttp" if transport == "aiohttp" else "httpx"
    client, built = build_client(options, transport=chosen, **kwargs)
    assert chosen == built
    return client


def _manager(transport: str, url: str) -> tether.SessionManager:
    chosen: TransportName = "aiohttp" if transport == "aiohttp" else "httpx"
    return tether.SessionManager(
        config={"sandbox": {"api_key": KEY, "base_url": url, "timeout": 5}},
        health_checks=False,
        retry=tether.RetryPolicy(attempts=1, wait_max=0),
        client_factory=lambda _name, options: build_client(options, transport=chosen)[
            0
        ],
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_pick_transport(anyio_backend: str) -> None:
    """
    aiohttp is picked under asyncio when installed, httpx's own otherwise.
    """
    expected = "aiohttp" if anyio_backend == "asyncio" and HAS_AIOHTTP else "httpx"

    assert expected == pick_transport()


async def test_lifecycle_through_manager(
    transport: str, url: str, emulator: SandboxEmulator
) -> None:
    """
    Create, ping and close a sandbox session through the manager.
    """
    async with _manager(transport, url) as manager:
        session = await manager.create("sandbox", vcpu_count=2)
        assert {session.remote_id} == emulator.live_sessions()
        health = await manager.ping(session)
        closed = await manager.close(session)

    assert health.ok
    assert tether.SessionState.CLOSED is closed.state
    assert set() == emulator.live_sessions()


async def test_plain_calls(transport: str, url: str) -> None:
    """
    Statuses, headers, JSON bodies and error bodies come through unchanged.
    """
    async with _client(transport, url) as client:
        created = await client.post(
            "/v1/sessions/session",
            json={"api_key": KEY, "vm_lifetime_seconds": 60},
        )
        sid = created.json()["session_id"]
        status = await client.get(f"/v1/sessions/status/{sid}")
        missing = await client.post("/kill", json={"session_id": "nope"})
        unauthenticated = await client.get(
            f"/v1/sessions/status/{sid}", headers={"X-API-Key": ""}
        )

    assert 200 == created.status_code
    assert "application/json" == created.headers["content-type"]
    assert "date" in created.headers
    assert {"exists": True, "session_id": sid} == {
        k: status.json()[k] for k in ("exists", "session_id")
    }
    assert 400 == missing.status_code
    assert {"detail": "Invalid session_id format"} == missing.json()
    assert 401 == unauthenticated.status_code


async def test_sse_streams_as_it_arrives(transport: str) -> None:
    """
    A streamed (SSE) response is read event by event, not buffered to the end.
    """
    second = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"data: one\n\n", "more_body": True}
        )
        await second.wait()
        await send({"type": "http.response.body", "body": b"data: two\n\n"})

    seen = []
    async with (
        serve_asgi(app) as server,
        _client(transport, server.url) as client,
        client.stream("GET", "/events") as response,
    ):
        async for line in response.aiter_lines():
            if line:
                seen.append(line)
            # The server sends the second event only once the first was read.
            second.set()

    assert ["data: one", "data: two"] == seen


async def test_read_timeout(transport: str) -> None:
    """
    The client's read timeout applies: a silent server gives ReadTimeout.
    """

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(10)

    async with (
        serve_asgi(app) as server,
        _client(transport, server.url, timeout=0.2) as client,
    ):
        with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")


async def test_connection_refused(transport: str) -> None:
    """
    A closed port is a connect error on both: the request was never sent.
    """
    async with _client(transport, f"http://127.0.0.1:{_free_port()}") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.DROP_AFTER])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_dropped_connection_is_not_a_connect_error(
    transport: str, url: str, emulator: SandboxEmulator, fault: Fault, method: str
) -> None:
    """
    A connection dropped once the request was sent is a read/protocol error.

    Never ConnectError or ConnectTimeout: tether would read those as "not
    sent" and might repeat a create.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = {fault}
    async with _client(transport, url) as client:
        with pytest.raises(httpx.HTTPError) as info:
            await client.request(method, "/v1/sessions/session", json={"api_key": KEY})

    assert isinstance(info.value, httpx.RemoteProtocolError | httpx.ReadError)
    assert not isinstance(info.value, httpx.ConnectError | httpx.ConnectTimeout)


async def test_dropped_create_is_outcome_unknown(
    transport: str, url: str, emulator: SandboxEmulator
) -> None:
    """
    Through the provider, a create dropped after sending is OutcomeUnknownError.
    """
    emulator.faults.rate = 1.0
    emulator.faults.kinds = {Fault.DROP_AFTER}
    async with _manager(transport, url) as manager:
        with pytest.raises(OutcomeUnknownError):
            await manager.create("sandbox")


async def test_refused_create_is_unavailable(transport: str) -> None:
    """
    Through the provider, a refused connection is ProviderUnavailableError.
    """
    async with _manager(transport, f"http://127.0.0.1:{_free_port()}") as manager:
        with pytest.raises(ProviderUnavailableError) as info:
            await manager.create("sandbox")

    assert not isinstance(info.value, OutcomeUnknownError)


async def test_drop_mid_stream(transport: str) -> None:
    """
    A connection dropped in the middle of a streamed body is a read error.
    """

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"data: one\n\n", "more_body": True}
        )
        raise DropConnection

    async with serve_asgi(app) as server, _client(transport, server.url) as client:
        with pytest.raises(httpx.HTTPError) as info:
            async with client.stream("GET", "/events") as response:
                async for _ in response.aiter_lines():
                    pass

    assert isinstance(info.value, httpx.RemoteProtocolError | httpx.ReadError)


async def test_cancellation(transport: str, url: str) -> None:
    """
    A cancelled request stops at once, and the client stays usable.
    """
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serve_asgi(app) as server, _client(transport, server.url) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.get("/slow")
        after = await client.get("/fast")
        release.set()

    assert scope.cancelled_caught
    assert 204 == after.status_code


async def test_limits_carry_through(transport: str) -> None:
    """
    max_connections caps concurrent connections on both transports.
    """
    active = 0
    most = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await anyio.sleep(0.05)
        active -= 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = httpx.Limits(max_connections=2)
    async with (
        serve_asgi(app) as server,
        _client(transport, server.url, limits=limits) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(8):
            tg.start_soon(client.get, "/")

    assert 2 == most


async def test_proxy_carries_through(transport: str) -> None:
    """
    An explicit proxy receives the requests, in absolute form, on both transports.
    """
    targets = []

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        targets.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with (
        serve_asgi(proxy) as server,
        _client(
            transport, "http://service.invalid", proxy=server.url, trust_env=False
        ) as client,
    ):
        response = await client.get("/v1/ping")

    assert 204 == response.status_code
    assert ["http://service.invalid/v1/ping"] == targets


async def test_env_proxy(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    HTTP_PROXY from the environment is honoured on both transports.
    """
    targets = []

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        targets.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serve_asgi(proxy) as server:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with _client(transport, "http://service.invalid") as client:
            response = await client.get("/v1/ping")

    assert 204 == response.status_code
    assert ["http://service.invalid/v1/ping"] == targets


async def test_a_password_in_the_base_url_becomes_basic_auth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """
    ``http://user:password@host`` is sent as Basic auth, and the password is
    neither in the client's base URL nor in httpx's own request log lines.
    """
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        seen.append(headers.get(b"authorization", b"").decode())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    password = "pw-in-url-0123456789"
    async with serve_asgi(app) as server:
        url = server.url.replace("http://", f"http://me:{password}@")
        client, _ = build_client(ClientOptions(base_url=url), transport="httpx")
        with caplog.at_level("INFO", logger="httpx"):
            async with client:
                await client.get("/x")

    assert seen == [httpx.BasicAuth("me", password)._auth_header]
    assert password not in str(client.base_url)
    assert password not in caplog.text
