"""
A small HTTP/1.1 server for ASGI apps, on anyio, for tests and demos.

It serves on a real loopback socket in the caller's event loop (asyncio or trio),
so tests talk to emulators exactly as they would to a service: real headers, real
status codes, chunked streaming (SSE), keep-alive, and dropped connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.abc
import attrs
import h11
from anyio.abc import SocketAttribute


#: An ASGI connection scope (``scope["method"]``, ``scope["path"]``, ...).
Scope = MutableMapping[str, Any]
#: An ASGI event, received or sent (``{"type": "http.response.body", ...}``).
Message = MutableMapping[str, Any]
#: The awaitable an ASGI app reads the request's events from.
Receive = Callable[[], Awaitable[Message]]
#: The awaitable an ASGI app sends its answer's events to.
Send = Callable[[Message], Awaitable[None]]
#: An ASGI application, as :func:`serve_asgi` and :class:`FaultInjector` take it.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_BODY = 16 * 1024 * 1024


class DropConnection(BaseException):
    """
    Raise from an ASGI app to drop the connection without answering.

    The client sees what it would see on a network failure: a closed socket
    (before the response, or in the middle of a streamed one). It derives from
    :class:`BaseException` so that frameworks' error middleware (which would answer
    500) lets it through.
    """


def _is_drop(exc: BaseException) -> bool:
    if isinstance(exc, DropConnection):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_drop(e) for e in exc.exceptions)
    return False


@attrs.frozen
class RecordedRequest:
    """
    One request the server received.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str] = attrs.field(repr=False)


@attrs.define
class ASGIServer:
    """
    A running server; get one from :func:`serve_asgi`.

    Attributes:
        url: The base URL, e.g. ``"http://127.0.0.1:54321"``.
        requests: Every request received, in order.
    """

    url: str
    host: str
    port: int
    requests: list[RecordedRequest] = attrs.field(factory=list)

    @property
    def request_count(self) -> int:
        """
        How many requests reached the server.
        """
        return len(self.requests)


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[ASGIServer]:
    """
    Serve *app* on a loopback port for the length of the ``async with`` block.

    Args:
        app: Any ASGI 3 application (Starlette, a plain callable, ...).
        host: The address to bind; loopback by default.
        port: The port; ``0`` picks a free one.

    Yields:
        The running :class:`ASGIServer`, whose ``url`` the client uses.

    Lifespan events are not sent: emulators keep state that changes with time by
    computing it when asked.
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = listener.extra(SocketAttribute.local_port)
    server = ASGIServer(url=f"http://{host}:{bound}", host=host, port=bound)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await _Connection(app, stream, server).run()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


class _Connection:
    def __init__(
        self, app: ASGIApp, stream: anyio.abc.SocketStream, server: ASGIServer
    ) -> None:
        self.app = app
        self.stream = stream
        self.server = server
        self.conn = h11.Connection(h11.SERVER)
        try:
            client = stream.extra(SocketAttribute.remote_address)
        except (anyio.TypedAttributeLookupError, OSError):  # pragma: no cover
            client = ("127.0.0.1", 0)
        self.client = (
            (str(client[0]), int(client[1])) if isinstance(client, tuple) else None
        )

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive(65536)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                data = b""
            self.conn.receive_data(data)

    async def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send(data)

    async def run(self) -> None:
        with contextlib.suppress(
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
            h11.RemoteProtocolError,
        ):
            while True:
                event = await self._next_event()
                if not isinstance(event, h11.Request):
                    return
                if not await self._cycle(event):
                    return
                if self.conn.our_state is h11.MUST_CLOSE:
                    return
                try:
                    self.conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return

    async def _cycle(self, request: h11.Request) -> bool:
        """
        Serve one request; return whether the connection may be reused.
        """
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    return False
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False

        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = [(k.lower(), v) for k, v in request.headers]
        self.server.requests.append(
            RecordedRequest(
                method=request.method.decode("ascii"),
                path=unquote(path),
                query=query,
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
            )
        )
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": self.client,
            "server": (self.server.host, self.server.port),
            "extensions": {},
            "state": {},
        }
        done = anyio.Event()
        request_sent = False
        started = False
        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        finished = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal started, status, response_headers, finished
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                response_headers = [
                    (bytes(k), bytes(v)) for k, v in message.get("headers", [])
                ]
                return
            if kind != "http.response.body" or finished:
                return
            chunk = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if not started:
                started = True
                names = {k.lower() for k, _ in response_headers}
                if not more and b"content-length" not in names:
                    response_headers.append(
                        (b"content-length", str(len(chunk)).encode())
                    )
                await self._send(
                    h11.Response(status_code=status, headers=response_headers)
                )
            if chunk:
                await self._send(h11.Data(data=chunk))
            if not more:
                finished = True
                await self._send(h11.EndOfMessage())

        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            done.set()
            if _is_drop(exc):
                return False
            if not isinstance(exc, Exception):
                raise
            done.set()
            if started:
                return False
            await self._send(
                h11.Response(
                    status_code=500,
                    headers=[
                        (b"content-type", b"text/plain"),
                        (b"content-length", b"21"),
                    ],
                )
            )
            await self._send(h11.Data(data=b"Internal Server Error"))
            await self._send(h11.EndOfMessage())
            return False
        done.set()
        if not started:
            await self._send(
                h11.Response(status_code=500, headers=[(b"content-length", b"0")])
            )
            await self._send(h11.EndOfMessage())
        elif not finished:
            return False
        return True
