"""
``tether.abc.send`` sends exactly what ``client.request`` would.

Providers' plain requests (a path under the base URL, a JSON or byte body,
extra headers) are built without httpx's ``build_request``, which is a fifth
of a request's cost on the fast transport. These tests hold the two ways to
the same request: compared field by field, and as the server receives them.
"""

from __future__ import annotations

import gc
import json
from typing import Any

import httpx
import pytest

from tether.abc import _build_request, send
from tether.testing import serve_asgi


BASES = [
    "http://svc",
    "http://svc/api",
    "http://svc/api/",
    "https://svc:8443/v1/",
]
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/kill", {"json": {"session_id": "abc", "n": [1, 2]}}),
    ("/v1/sessions/status/ab%20c", {}),
    ("/search?q=a+b&page=2", {"headers": {"X-Key": "override", "X-Extra": "1"}}),
    ("/caf\u00e9/\u00fc x", {"content": b"raw bytes"}),
    ("/x", {"json": None, "content": None, "headers": None}),
    # Not plain: httpx builds these itself.
    ("/p", {"params": {"a": "1"}}),
    ("http://other/abs", {}),
    ("//other/protocol-relative", {}),
    ("relative/no-slash", {}),
    ("/t", {"timeout": 3.0}),
]


def _same(a: httpx.Request, b: httpx.Request) -> None:
    assert (a.method, str(a.url)) == (b.method, str(b.url))
    assert list(a.headers.multi_items()) == list(b.headers.multi_items())
    assert a.extensions == b.extensions
    assert a.read() == b.read()


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(("url", "kwargs"), CALLS)
def test_built_request_is_httpx_own(
    base: str, url: str, kwargs: dict[str, Any]
) -> None:
    """
    Field by field, the request is the one ``client.build_request`` makes.
    """
    client = httpx.AsyncClient(
        base_url=base, headers={"X-Key": "default", "Accept": "a/b"}, timeout=7
    )

    _same(
        client.build_request("POST", url, **kwargs),
        _build_request(client, "POST", url, dict(kwargs)),
    )


@pytest.mark.parametrize(
    "client",
    [
        pytest.param(
            httpx.AsyncClient(base_url="http://svc/api?tenant=1"), id="base-with-query"
        ),
        pytest.param(
            httpx.AsyncClient(base_url="http://svc", cookies={"sid": "s1"}),
            id="client-cookies",
        ),
        pytest.param(
            httpx.AsyncClient(base_url="http://svc", params={"tenant": "1"}),
            id="client-params",
        ),
    ],
)
def test_unusual_clients_get_httpx_own_building(client: httpx.AsyncClient) -> None:
    """
    A base URL with a query, a client holding cookies or default query
    parameters: httpx builds the request.
    """
    _same(
        client.build_request("GET", "/status"),
        _build_request(client, "GET", "/status", {}),
    )


async def test_the_server_receives_the_same_request() -> None:
    """
    Over a real socket: the same request line, headers and body either way,
    with the client's event hooks and auth applied as ``send`` applies them, and
    what ``client.request`` takes besides (params, a timeout, auth per call).
    """
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send_: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(
            {
                "method": scope["method"],
                "path": scope["raw_path"],
                "query": scope["query_string"],
                "headers": sorted(scope["headers"]),
                "body": body,
            }
        )
        await send_(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send_({"type": "http.response.body", "body": b'{"ok": true}'})

    hooked: list[str] = []
    calls = [
        *CALLS[:5],
        ("/p", {"params": {"a": "1"}, "timeout": 3.0}),
        ("/auth", {"auth": ("other", "secret"), "follow_redirects": True}),
    ]

    async def on_request(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    async with (
        serve_asgi(app) as server,
        httpx.AsyncClient(
            base_url=f"{server.url}/api",
            headers={"X-Key": "k"},
            auth=("user", "pass"),
            event_hooks={"request": [on_request]},
        ) as client,
    ):
        for url, kwargs in calls:
            direct = await client.request("POST", url, **kwargs)
            through = await send(
                client, "POST", url, provider="p", operation="op", **kwargs
            )
            assert direct.status_code == through.status_code == 200
            assert {"ok": True} == json.loads(through.content)

    assert len(seen) == 2 * len(calls)
    for direct_seen, through_seen in zip(seen[::2], seen[1::2], strict=True):
        assert direct_seen == through_seen
    assert hooked[::2] == hooked[1::2]
    assert any((b"authorization", b"Basic dXNlcjpwYXNz") in s["headers"] for s in seen)


async def test_responses_are_freed_without_the_garbage_collector() -> None:
    """
    httpx's response and its stream refer to each other; ``send`` cuts that
    cycle once the body is read, so a response (and what the transport hung
    off it) is freed as soon as it is dropped. The response stays whole.
    """

    async def app(scope: Any, receive: Any, send_: Any) -> None:
        await receive()
        await send_(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send_({"type": "http.response.body", "body": b'{"n": 1}'})

    async with (
        serve_asgi(app) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        kept = await send(client, "GET", "/one", provider="p", operation="op")
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(5):
                await send(client, "GET", "/x", provider="p", operation="op")
            gc.collect()
            cyclic = [o for o in gc.garbage if isinstance(o, httpx.Response)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    assert [] == cyclic
    assert {"n": 1} == kept.json()
    assert '{"n": 1}' == kept.text
    assert kept.is_closed
    assert kept.elapsed.total_seconds() >= 0
