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
    Operation,
    Provider,
    ProviderConfig,
    RemoteSession,
    SessionHandle,
)
from tether.exceptions import AdmissionError, OutcomeUnknownError
from tether.testing import ASGIServer, serve_asgi


@attrs.define
class Browsers:
    """
    A tiny browser-session service: sessions by id, each tagged by its client.
    """

    sessions: dict[str, str] = attrs.Factory(dict)
    #: The labels each session was created with.
    labels: dict[str, dict[str, str]] = attrs.Factory(dict)
    #: The next create is carried out, then answered like this.
    answer: tuple[int, bytes] | None = None
    #: The API key the service expects in ``X-BB-API-Key`` (None: no check).
    key: str | None = None
    #: Screenshot requests received, and how many of the next ones get a 503.
    screenshots: int = 0
    screenshot_unavailable: int = 0

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
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        sent_key = headers.get("x-bb-api-key", "")
        status, out = 404, b"{}"
        if self.key is not None and sent_key != self.key:
            # Like many services, it quotes the key it was sent back.
            status = 401
            out = json.dumps({"message": f"invalid API key {sent_key!r}"}).encode()
        elif method == "POST" and path == "/sessions":
            sid = f"bb-{len(self.sessions) + 1}"
            created = json.loads(body)
            self.sessions[sid] = created["tag"]
            self.labels[sid] = created.get("labels", {})
            answer = {"id": sid, "signingKey": f"bb_sign_{sid}_0123456789abcdef"}
            status, out = 201, json.dumps(answer).encode()
            if self.answer is not None:
                (status, out), self.answer = self.answer, None
        elif method == "GET" and path == "/sessions":
            tag = scope["query_string"].decode().removeprefix("tag=")
            found = [s for s, t in self.sessions.items() if t == tag]
            status, out = 200, json.dumps(found).encode()
        elif method == "GET" and path == "/sessions/all":
            every = [
                {"id": s, "tag": t, "labels": self.labels.get(s, {})}
                for s, t in self.sessions.items()
            ]
            status, out = 200, json.dumps(every).encode()
        elif method == "GET" and path.endswith("/screenshot"):
            sid = path.split("/")[2]
            self.screenshots += 1
            if self.screenshot_unavailable:
                self.screenshot_unavailable -= 1
                status, out = 503, b"busy"
            elif sid in self.sessions:
                status, out = 200, f"png:{sid}".encode()
        elif method == "DELETE" and path.startswith("/sessions/"):
            status = 204 if self.sessions.pop(path.rsplit("/", 1)[1], None) else 404
            out = b""
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": out})


@attrs.frozen(kw_only=True)
class BrowserConfig(ProviderConfig):
    sessions_per_key: int | None = None
    #: A plain string, not a Secret: only the declared header tells tether.
    key: str = attrs.field(default="", repr=False)


class BrowserHandle(SessionHandle["BrowserProvider"]):
    """
    Written as the guide's "Operations and a typed handle" shows.
    """

    __slots__ = ()

    async def screenshot(self) -> bytes:
        return await self.run("screenshot", self.provider.screenshot)


class BrowserProvider(Provider[BrowserConfig]):
    """
    Written as the guide says: ``self.request`` and ``self.json``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(find=True, list=True)
    config_class: ClassVar[type[ProviderConfig]] = BrowserConfig
    secret_headers: ClassVar[frozenset[str]] = frozenset({"X-BB-API-Key"})
    secret_fields: ClassVar[frozenset[str]] = frozenset({"signingKey"})
    operations: ClassVar[Mapping[str, Operation]] = {
        "screenshot": Operation(idempotent=True)
    }
    handle_class: ClassVar[type[SessionHandle[Any]]] = BrowserHandle

    def __init__(self, config: BrowserConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if config.sessions_per_key is not None:
            self.set_capabilities(max_sessions_per_credential=config.sessions_per_key)

    @classmethod
    def client_options(cls, config: BrowserConfig) -> ClientOptions:
        return ClientOptions(
            base_url=config.base_url,
            headers={"X-BB-API-Key": config.key},
        )

    def credential_id(self) -> str | None:
        return "browser:key"

    async def create(self, request: CreateRequest) -> RemoteSession:
        body = {"tag": request.tether_id, "labels": dict(request.labels)}
        response = await self.request(
            "POST", "/sessions", operation="create", json=body
        )
        answer = self.json(response, operation="create")
        # A careless provider keeps the whole answer: tether still stores no secret.
        return RemoteSession(id=answer["id"], data=answer)

    async def list(self) -> list[RemoteSession]:
        response = await self.request("GET", "/sessions/all", operation="list")
        return [
            RemoteSession(id=s["id"], tether_id=s["tag"], labels=s["labels"])
            for s in self.json(response, operation="list")
        ]

    async def find(self, tether_id: str) -> RemoteSession | None:
        response = await self.request(
            "GET", f"/sessions?tag={tether_id}", operation="find"
        )
        found = self.json(response, operation="find")
        return RemoteSession(id=found[0], tether_id=tether_id) if found else None

    async def screenshot(self, session: tether.Session) -> bytes:
        response = await self.request(
            "GET",
            f"/sessions/{session.remote_id}/screenshot",
            operation="screenshot",
            session_id=session.id,
        )
        return response.content

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
    server: ASGIServer,
    cls: type[Provider[Any]] = BrowserProvider,
    store: tether.Store | None = None,
    **config: Any,
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
        store=store,
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


async def test_a_key_the_service_echoes_is_masked(
    server: ASGIServer, service: Browsers, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A service that quotes a wrong key back in its error: the key, sent under
    the provider's declared secret header, is masked in the error's message,
    body and repr, and in tether's log lines.
    """
    service.key = "bb_live_the-right-key"
    leaked = "bb_live_0123456789-wrong"
    caplog.set_level("DEBUG", logger="tether")
    async with manager(server, key=leaked) as m:
        with pytest.raises(tether.AuthError) as caught:
            await m.create("browser")

    seen = [str(caught.value), repr(caught.value), repr(caught.value.body), caplog.text]
    assert [] == [text for text in seen if leaked in text]
    assert "invalid API key" in str(caught.value.body)
    assert [] == list(service.sessions)


async def test_a_secret_field_in_an_answer_is_never_stored(
    server: ASGIServer, service: Browsers
) -> None:
    """
    A declared secret response field (``signingKey``) the provider keeps in
    the session's data is masked in the stored record, and its value is
    masked wherever it shows up later.
    """
    store = tether.MemoryStore()
    async with manager(server, store=store) as m:
        session = await m.create("browser")
        [stored] = await store.list()
        signing_key = f"bb_sign_{session.remote_id}_0123456789abcdef"
        # While the provider runs, the value it read is masked in any text.
        masked = tether.redact_text(f"the service said {signing_key}")

    assert "***" == stored.data["signingKey"]
    assert signing_key not in repr(stored.to_dict())
    assert "the service said ***" == masked


async def test_adopted_sessions_keep_their_labels(
    server: ASGIServer, service: Browsers
) -> None:
    """
    A session whose record was lost comes back, through ``reconcile``, with
    the labels the service stored: one session on the service, none lost.
    """
    async with manager(server) as m:
        made = await m.create("browser", labels={"team": "ml"})

    async with manager(server) as m:  # a new manager: its store has no record
        report = await m.reconcile(orphans="adopt", grace=0)
        adopted = await m.get(made.id)

    assert {"adopted": 1} == report.counts
    assert (tether.SessionState.ACTIVE, {"team": "ml"}) == (
        adopted.state,
        dict(adopted.labels),
    )
    assert [made.remote_id] == list(service.sessions)


async def test_a_third_party_handle_runs_under_the_managers_guarantees(
    server: ASGIServer, service: Browsers
) -> None:
    """
    A handle declared as the guide shows: ``manager.session(BrowserProvider)``
    gives it, an idempotent operation is retried past a 503, and once the
    session ended the operation is refused before any request is sent.
    """
    service.screenshot_unavailable = 1
    async with manager(server) as m:
        async with m.session(BrowserProvider) as browser:
            assert isinstance(browser, BrowserHandle)
            shot = await browser.screenshot()
        sent = service.screenshots
        with pytest.raises(tether.SessionEndedError):
            await browser.screenshot()

    assert f"png:{browser.remote_id}".encode() == shot
    assert 2 == sent  # the 503, then the retry
    assert sent == service.screenshots  # nothing sent after the end
    assert [] == list(service.sessions)
