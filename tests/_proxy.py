"""
A fault-injecting HTTP/1.1 proxy on real TCP, for the proxy chaos tests.

It sits between a client and a service (an emulator in its own process),
parses each request (h11: request line, headers, Content-Length or chunked
body), and, per request, draws a fault from a seeded ``random.Random``:

- ``pass``: forward, relay the answer;
- ``delay``: wait a little, then as ``pass``;
- ``drop_after_forward``: forward (the service acts), then close the client's
  connection without answering;
- ``502`` / ``504``: forward (the service acts), then answer a gateway error
  instead of the real answer;
- ``reset_before_forward``: reset the client's connection (RST) without
  forwarding: the service never sees the request;
- ``truncate_list``: forward a list request, and cut the list in the answer to
  its first element (only on routes the caller calls lists);
- ``quote_key``: answer an error (401, 400 or 500) without forwarding, whose
  body quotes the credential the client sent (its ``Authorization`` or
  ``X-API-Key`` value: "Invalid API key <key>"), as some services do;
- ``retry_after_long``: answer 429 without forwarding, with a ``Retry-After``
  of an hour, longer than any manager's shield (only on creates and closes
  unless ``only`` says otherwise).

:class:`StoreCut` forwards raw TCP (a Redis store's connections) and can cut
it: reset every connection and refuse new ones until restored.

Only requests the caller's ``route`` function classifies are faulted; others
pass. Each request opens its own upstream connection (``Connection: close``),
while the client's connection is kept alive across requests when it asks.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Literal

import anyio
import anyio.abc
import attrs
import h11
from anyio.abc import SocketAttribute


Route = Literal["session", "list", "create", "close", "read"]
#: Classifies a request by (method, path): a session route, a list route, a
#: create route (a session route the proxy also counts), a close route, a
#: read-only pre-step of a create ("read"), or ``None`` (not faulted).
Classifier = Callable[[str, str], Route | None]

FAULTS: Sequence[str] = (
    "delay",
    "drop_after_forward",
    "502",
    "504",
    "reset_before_forward",
    "truncate_list",
    "quote_key",
    "retry_after_long",
)

#: The routes a fault kind hits at most (kinds not named hit every route).
#: A ping waits out a Retry-After up to the retry policy's retry_after_max
#: (nothing bounds it): a long one is drawn only where a shield bounds the wait.
ONLY: Mapping[str, frozenset[str]] = {
    "truncate_list": frozenset({"list"}),
    "retry_after_long": frozenset({"create", "close"}),
}
#: The ``Retry-After`` of a ``retry_after_long`` fault, in seconds.
RETRY_AFTER_LONG = 3600

_HOP = {b"connection", b"keep-alive", b"content-length", b"transfer-encoding"}


class _Reset(Exception):  # noqa: N818 -- a control-flow signal
    """
    Close the client's connection now (after a reset or a dropped answer).
    """


@attrs.define
class ChaosProxy:
    """
    The proxy's configuration and its counts; run it with :func:`serve_proxy`.

    Attributes:
        upstream: ``(host, port)`` of the service.
        classify: Which requests may be faulted, and which are lists.
        rate: The fraction of classified requests that get a fault.
        seed: Seed of the fault sequence.
        kinds: The faults to draw from (see ``only``).
        only: The routes each fault kind may hit (default :data:`ONLY`).
        routes: The routes faulted at all (``None``: every classified one).
        delay: Upper bound of a ``delay`` fault, in seconds.
        on_request: Called (awaited) with each classified request's route and
            fault before it is forwarded (a test's hook, e.g. to cut a store
            while a create is at the service).
        faults: Faults injected, by kind.
        requests: Requests received, by route class (``None`` as ``"other"``).
        created_upstream: Creates the service answered with a 2xx (whatever
            the client was then told).
        creates: Each such create's fault and the service's real answer body:
            the ground truth of what was made, for services that cannot list.
        duplicate_creates: Test hook: forward each create this many extra times
            (to check that the suite can fail).
    """

    upstream: tuple[str, int]
    classify: Classifier
    rate: float = 0.3
    seed: int = 0
    kinds: Sequence[str] = FAULTS
    only: Mapping[str, frozenset[str]] = ONLY
    routes: frozenset[str] | None = None
    delay: float = 0.05
    on_request: Callable[[Route, str], Awaitable[None]] | None = None
    faults: Counter[str] = attrs.field(factory=Counter)
    requests: Counter[str] = attrs.field(factory=Counter)
    created_upstream: int = 0
    creates: list[tuple[str, bytes]] = attrs.field(factory=list)
    duplicate_creates: int = 0
    url: str = ""
    _random: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 -- not for security

    def draw(self, route: Route | None) -> str:
        """
        The fault for one request (``"pass"`` for none).
        """
        if route is None or (self.routes is not None and route not in self.routes):
            return "pass"
        if self._random.random() >= self.rate:
            return "pass"
        kinds = [k for k in self.kinds if route in self.only.get(k, (route,))]
        return self._random.choice(kinds) if kinds else "pass"

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(client, conn)
                if request is None:
                    return
                if not await self._cycle(client, conn, request, body):
                    return
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except _Reset:
            return
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
            h11.ProtocolError,
            OSError,
        ):
            return

    async def _read_request(
        self, client: anyio.abc.SocketStream, conn: h11.Connection
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await client.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed, or anything unexpected
                return None, b""

    async def _cycle(
        self,
        client: anyio.abc.SocketStream,
        conn: h11.Connection,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        method = request.method.decode("ascii")
        path = request.target.decode("latin-1").partition("?")[0]
        route = self.classify(method, path)
        self.requests[route or "other"] += 1
        fault = self.draw(route)
        if fault != "pass":
            self.faults[fault] += 1
        if route is not None and self.on_request is not None:
            await self.on_request(route, fault)
        if fault == "reset_before_forward":
            await _reset(client)
            raise _Reset
        if fault in ("quote_key", "retry_after_long"):
            status, headers, answer = self._refusal(fault, request)
            await _answer(client, conn, status, headers, answer)
            return True
        if fault == "delay":
            await anyio.sleep(self._random.uniform(0, self.delay))
        status, headers, answer = await self._forward(request, body)
        if route == "create" and 200 <= status < 300:
            self.created_upstream += 1
            self.creates.append((fault, answer))
            for _ in range(self.duplicate_creates):
                status2, _h, answer2 = await self._forward(request, body)
                if 200 <= status2 < 300:
                    self.created_upstream += 1
                    self.creates.append(("duplicate", answer2))
        if fault == "drop_after_forward":
            await client.aclose()
            raise _Reset
        if fault in ("502", "504"):
            status = int(fault)
            headers = [(b"content-type", b"text/plain")]
            answer = b"Bad Gateway" if fault == "502" else b"Gateway Timeout"
        if fault == "truncate_list":
            answer = _truncate(answer)
        await _answer(client, conn, status, headers, answer)
        return True

    def _refusal(
        self, fault: str, request: h11.Request
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """
        The error a ``quote_key`` or ``retry_after_long`` fault answers with
        (the service never sees the request).
        """
        json_type = [(b"content-type", b"application/json")]
        if fault == "retry_after_long":
            headers = [*json_type, (b"retry-after", str(RETRY_AFTER_LONG).encode())]
            body: dict[str, object] = {
                "detail": "Too many requests",
                "error": "rate_limited",
            }
            return 429, headers, json.dumps(body).encode()
        sent = [
            v.decode("latin-1")
            for k, v in request.headers
            if k.lower() in (b"authorization", b"x-api-key")
        ]
        # The header's value, and the bare key after an auth scheme.
        quoted = [p for v in sent for p in dict.fromkeys((v, v.split(" ", 1)[-1]))]
        text = "Invalid API key " + " / ".join(quoted)
        status = self._random.choice((401, 400, 500))
        # Every envelope the providers read: FastAPI's detail, error, message.
        body = {
            "detail": text,
            "error": {"message": text, "code": "invalid_api_key"},
            "message": text,
            "success": False,
        }
        return status, json_type, json.dumps(body).encode()

    async def _forward(
        self, request: h11.Request, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """
        Send *request* upstream on a fresh connection; read the whole answer.
        """
        host, port = self.upstream
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP]
        headers.append((b"connection", b"close"))
        if body or request.method in (b"POST", b"PUT", b"PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
        up = h11.Connection(h11.CLIENT)
        async with await anyio.connect_tcp(host, port) as stream:
            data = up.send(
                h11.Request(
                    method=request.method, target=request.target, headers=headers
                )
            )
            data += up.send(h11.Data(data=body)) if body else b""
            data += up.send(h11.EndOfMessage())
            await stream.send(data)
            response: h11.Response | None = None
            answer = bytearray()
            while True:
                event = up.next_event()
                if event is h11.NEED_DATA:
                    try:
                        chunk = await stream.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        chunk = b""
                    up.receive_data(chunk)
                    continue
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    answer += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.InformationalResponse):
                    continue
                else:
                    msg = f"upstream closed mid-answer: {event!r}"
                    raise OSError(msg)
        assert response is not None
        return response.status_code, list(response.headers), bytes(answer)


async def _answer(
    client: anyio.abc.SocketStream,
    conn: h11.Connection,
    status: int,
    headers: list[tuple[bytes, bytes]],
    answer: bytes,
) -> None:
    keep = [(k, v) for k, v in headers if k.lower() not in _HOP]
    keep.append((b"content-length", str(len(answer)).encode()))
    await client.send(conn.send(h11.Response(status_code=status, headers=keep)))
    if answer:
        await client.send(conn.send(h11.Data(data=answer)))
    await client.send(conn.send(h11.EndOfMessage()))


async def _reset(client: anyio.abc.SocketStream) -> None:
    """
    Abort the client's connection with a TCP RST (SO_LINGER 0, then close).
    """
    raw = client.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()


def _truncate(answer: bytes) -> bytes:
    """
    A list answer cut to its first element: a JSON array, or the first list
    found among a JSON object's values (e.g. ``{"sessions": [...]}``).
    """
    try:
        doc = json.loads(answer)
    except ValueError:
        return answer
    if isinstance(doc, list):
        return json.dumps(doc[:1]).encode()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(value, list):
                doc[key] = value[:1]
                return json.dumps(doc).encode()
    return answer


@contextlib.asynccontextmanager
async def _serve(
    handler: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    # Serve *handler* on 127.0.0.1, a free port (yielded), for the block.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            await handler(stream)
        finally:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await stream.aclose()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield listener.extra(SocketAttribute.local_port)
        finally:
            tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def serve_proxy(proxy: ChaosProxy) -> AsyncIterator[ChaosProxy]:
    """
    Run *proxy* on 127.0.0.1, a free port, for the ``async with`` block; its
    ``url`` is set.
    """
    async with _serve(proxy.handle) as port:
        proxy.url = f"http://127.0.0.1:{port}"
        yield proxy


@attrs.define
class StoreCut:
    """
    A raw TCP forwarder to a store (Redis), that a test can cut and restore.

    While cut, every open connection is reset and each new one is accepted and
    reset at once: the store is unreachable, as when its host goes away. Run it
    with :func:`serve_store_cut`.

    Attributes:
        upstream: ``(host, port)`` of the store.
        port: The port it listens on (set when served).
        cuts: Times it was cut.
        refused: Connections reset while cut (opened before or during the cut).
    """

    upstream: tuple[str, int]
    port: int = 0
    cuts: int = 0
    refused: int = 0
    down: bool = False
    _scopes: set[anyio.CancelScope] = attrs.field(factory=set)

    def cut(self) -> None:
        """
        Reset every connection now, and every new one until :meth:`restore`.
        """
        self.down = True
        self.cuts += 1
        self.close_all()

    def close_all(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self.down = False

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        if self.down:
            self.refused += 1
            await _reset(client)
            return
        try:
            upstream = await anyio.connect_tcp(*self.upstream)
        except OSError:
            await _reset(client)
            return
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with upstream, anyio.create_task_group() as tg:
                    tg.start_soon(_pump, client, upstream, tg.cancel_scope)
                    tg.start_soon(_pump, upstream, client, tg.cancel_scope)
            finally:
                self._scopes.discard(scope)
        if scope.cancel_called:
            self.refused += 1
        with anyio.CancelScope(shield=True):
            await _reset(client)


async def _pump(
    source: anyio.abc.SocketStream,
    sink: anyio.abc.SocketStream,
    done: anyio.CancelScope,
) -> None:
    try:
        while True:
            data = await source.receive(65536)
            await sink.send(data)
    except (
        anyio.EndOfStream,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        OSError,
    ):
        pass
    finally:
        done.cancel()


@contextlib.asynccontextmanager
async def serve_store_cut(cut: StoreCut) -> AsyncIterator[StoreCut]:
    """
    Run *cut* on 127.0.0.1, a free port, for the ``async with`` block; its
    ``port`` is set.
    """
    async with _serve(cut.handle) as port:
        cut.port = port
        try:
            yield cut
        finally:
            cut.close_all()
