"""
The plugin API's documented patterns hold their guarantees by construction:
a third-party provider written from the guide, against its own service on a
real socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import attrs
import pytest

import tether
from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    Provider,
    ProviderConfig,
    RemoteSession,
)
from tether.exceptions import AdmissionError, OutcomeUnknownError
from tether.testing import ASGIServer, serve_asgi


@attrs.define
class Browsers:
    """
    A tiny browser-session service: sessions by id, each tagged by its client.
    """

    sessions: dict[str, str] = attrs.Factory(dict)
    #: The next create is carried out, then answered like this.
    answer: tuple[int, bytes] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        status, out = 404, b"{}"
        if method == "POST" and path == "/sessions":
            sid = f"bb-{len(self.sessions) + 1}"
            self.sessions[sid] = json.loads(body)["tag"]
            status, out = 201, json.dumps({"id": sid}).encode()
            if self.answer is not None:
                (status, out), self.answer = self.answer, None
        elif method == "GET" and path == "/sessions":
            tag = scope["query_string"].decode().removeprefix("tag=")
            found = [s for s, t in self.sessions.items() if t == tag]
            status, out = 200, json.dumps(found).encode()
        elif method == "DELETE" and path.startswith("/sessions/"):
            status = 204 if self.sessions.pop(path.rsplit("/", 1)[1], None) else 404
            out = b""
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": out})


@attrs.frozen(kw_only=True)
class BrowserConfig(ProviderConfig):
    sessions_per_key: int | None = None


class BrowserProvider(Provider[BrowserConfig]):
    """
    Written as the guide says: ``self.request`` and ``self.json``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(find=True)
    config_class: ClassVar[type[ProviderConfig]] = BrowserConfig

    def __init__(self, config: BrowserConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if config.sessions_per_key is not None:
            self.set_capabilities(max_sessions_per_credential=config.sessions_per_key)

    @classmethod
    def client_options(cls, config: BrowserConfig) -> ClientOptions:
        return ClientOptions(base_url=config.base_url)

    def credential_id(self) -> str | None:
        return "browser:key"

    async def create(self, request: CreateRequest) -> RemoteSession:
        response = await self.request(
            "POST", "/sessions", operation="create", json={"tag": request.tether_id}
        )
        return RemoteSession(id=self.json(response, operation="create")["id"])

    async def find(self, tether_id: str) -> RemoteSession | None:
        response = await self.request(
            "GET", f"/sessions?tag={tether_id}", operation="find"
        )
        found = self.json(response, operation="find")
        return RemoteSession(id=found[0], tether_id=tether_id) if found else None

    async def ping(self, session: tether.Session) -> tether.Health:
        return tether.Health(status=tether.HealthStatus.ALIVE)

    async def close(self, session: tether.Session) -> None:
        await self.request(
            "DELETE", f"/sessions/{session.remote_id}", operation="close", ok=(404,)
        )


class Unfindable(BrowserProvider):
    capabilities: ClassVar[Capabilities] = Capabilities()


@pytest.fixture(name="service")
def _service() -> Browsers:
    return Browsers()


@pytest.fixture(name="server")
async def _server(service: Browsers) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(service) as server:
        yield server


def manager(
    server: ASGIServer, cls: type[Provider[Any]] = BrowserProvider, **config: Any
) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("browser", cls)
    options: Mapping[str, Any] = {"base_url": server.url, **config}
    return tether.SessionManager(
        registry=registry,
        config={"browser": options},
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        health_checks=False,
        on_exit="keep",
        environ={},
        admission=tether.AdmissionPolicy(mode="reject"),
    )


@pytest.mark.parametrize(
    "answer",
    [(201, b"<html>not json"), (502, b"bad gateway"), (504, b"")],
    ids=["unreadable-2xx", "502", "504"],
)
async def test_a_lost_create_answer_is_found_not_repeated(
    server: ASGIServer, service: Browsers, answer: tuple[int, bytes]
) -> None:
    """
    A create the service carried out but whose answer was lost (a 2xx that
    cannot be read, a gateway's 502 or 504) is looked up by tether's tag, not
    sent again: one session on the service, tracked.
    """
    service.answer = answer
    async with manager(server) as m:
        session = await m.create("browser")

    assert [session.remote_id] == list(service.sessions)
    assert tether.SessionState.ACTIVE == session.state


async def test_without_find_a_lost_create_answer_stays_unknown(
    server: ASGIServer, service: Browsers
) -> None:
    """
    Where the service cannot find a session by tag, the create is not
    repeated either: OutcomeUnknownError, the record kept CREATING for
    reconcile, and still exactly one session on the service.
    """
    service.answer = (200, b"garbage")
    async with manager(server, Unfindable) as m:
        with pytest.raises(OutcomeUnknownError):
            await m.create("browser")
        [record] = await m.list()

    assert 1 == len(service.sessions)
    assert tether.SessionState.CREATING == record.state


async def test_capabilities_can_come_from_config(
    server: ASGIServer, service: Browsers
) -> None:
    """
    ``set_capabilities`` in ``__init__`` makes a plan-dependent limit (here,
    one session per key) hold, from config.
    """
    async with manager(server, sessions_per_key=1) as m:
        await m.create("browser")
        with pytest.raises(AdmissionError):
            await m.create("browser")
        assert 1 == m.provider("browser").capabilities.max_sessions_per_credential

    assert 1 == len(service.sessions)
