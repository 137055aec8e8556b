"""
Seeded fault injection for emulators, as ASGI middleware.
"""

from __future__ import annotations

import enum
import json
import random
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import anyio
import attrs

from tether.testing._asgi import ASGIApp, DropConnection, Message, Receive, Scope, Send


class Fault(enum.StrEnum):
    """
    The kinds of failure an emulator can inject.
    """

    #: Answer 503 without touching the emulator's state.
    SERVER_ERROR = "server_error"
    #: Answer 429 with ``Retry-After``.
    RATE_LIMIT = "rate_limit"
    #: Wait before handling the request (then handle it).
    LATENCY = "latency"
    #: Close the connection without answering, before the request is handled.
    DROP = "drop"
    #: Handle the request, then drop the connection instead of answering: the
    #: client cannot tell whether it happened.
    DROP_AFTER = "drop_after"
    #: Answer 200 with a body that is not JSON, without touching state.
    MALFORMED = "malformed"


def _all_faults() -> frozenset[Fault]:
    return frozenset(Fault)


@attrs.define
class FaultInjector:
    """
    ASGI middleware that fails a seeded fraction of requests.

    Wrap an emulator's app with it; tests set :attr:`rate` and :attr:`kinds`, and
    read :attr:`injected` afterwards. The same seed gives the same faults for
    the same sequence of requests.

    A rate is a probability: ``rate=0.3`` may well inject nothing in the two
    requests a short test sends. A test that means to see faults gives a
    schedule instead, ``every=N``: the N-th, 2N-th, ... request (of those
    ``applies_to`` lets through) fails, whatever the seed, which then only
    picks the kind. The pytest plugin's ``tether_faults`` fixture builds
    injectors that fail the test at teardown when they injected nothing.

    Args:
        app: The ASGI app to protect.
        rate: The fraction of requests to fail, from 0 to 1 (0: off).
        seed: Seed of the random generator.
        kinds: Which faults to draw from.
        retry_after: Seconds put in ``Retry-After`` on 429.
        latency: Seconds added by a latency fault.
        applies_to: A predicate on the ASGI scope; requests it refuses pass
            untouched (e.g. keep the emulator's control routes clean).
        every: Fail every *every*-th request, on a schedule instead of at
            :attr:`rate` (0: off; cannot be combined with a rate).

    :attr:`injected` counts the faults injected so far, by kind, and
    :attr:`seen` the requests it could have failed (HTTP requests that
    ``applies_to`` let through).

    .. versionchanged:: 0.1.0
       *every* and :attr:`seen`.
    """

    app: ASGIApp
    rate: float = 0.0
    seed: int = 0
    kinds: Collection[Fault] = attrs.field(factory=_all_faults)
    retry_after: float = 0.0
    latency: float = 0.05
    applies_to: Callable[[Scope], bool] | None = None
    injected: Counter[Fault] = attrs.field(factory=Counter)
    every: int = attrs.field(default=0, kw_only=True, validator=attrs.validators.ge(0))
    seen: int = attrs.field(default=0, init=False)
    _random: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.every and self.rate:
            msg = (
                f"FaultInjector takes a rate or a schedule, not both "
                f"(rate={self.rate}, every={self.every})"
            )
            raise ValueError(msg)
        self._random = random.Random(self.seed)  # noqa: S311 -- not for security

    def reseed(self, seed: int) -> None:
        """
        Restart the fault sequence from *seed*.
        """
        self.seed = seed
        self._random = random.Random(seed)  # noqa: S311 -- not for security

    def _draw(self) -> Fault | None:
        self.seen += 1
        if not self.kinds:
            return None
        if self.every:
            if self.seen % self.every:
                return None
            return self._random.choice(sorted(self.kinds))
        if self.rate <= 0:
            return None
        if self._random.random() >= self.rate:
            return None
        return self._random.choice(sorted(self.kinds))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.applies_to is not None and not self.applies_to(scope)
        ):
            await self.app(scope, receive, send)
            return
        fault = self._draw()
        if fault is None:
            await self.app(scope, receive, send)
            return
        self.injected[fault] += 1
        if fault is Fault.SERVER_ERROR:
            await _respond(send, 503, {"detail": "injected fault: service unavailable"})
        elif fault is Fault.RATE_LIMIT:
            await _respond(
                send,
                429,
                {"detail": "injected fault: too many requests"},
                headers=[(b"retry-after", str(int(self.retry_after)).encode())],
            )
        elif fault is Fault.LATENCY:
            await anyio.sleep(self.latency)
            await self.app(scope, receive, send)
        elif fault is Fault.DROP:
            raise DropConnection
        elif fault is Fault.DROP_AFTER:

            async def swallow(message: Message) -> None:
                pass

            await self.app(scope, receive, swallow)
            raise DropConnection
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"truncated": '})


async def _respond(
    send: Send,
    status: int,
    body: Any,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@attrs.define
class LoseAnswer:
    """
    ASGI middleware that lets the service act, then loses its answer: the
    fault that matters most to a create.

    The next *times* requests matching *method* and *path* reach *app*, which
    carries them out; the client then gets a reset connection (``how="reset"``)
    or a gateway's error page with that status (``how="502"``, ``"504"``) instead
    of the real answer. Judge the outcome by the emulator's own state::

        lose = LoseAnswer(emulator.app, "POST", "/v1/sessions", "502")
        async with serve_asgi(lose) as server:
            ...
        assert lose.lost == 1 and len(emulator.live_sessions()) == 1
    """

    app: ASGIApp
    method: str
    path: str
    how: str
    times: int = 1
    lost: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != self.method
            or scope["path"] != self.path
            or self.lost >= self.times
        ):
            await self.app(scope, receive, send)
            return
        self.lost += 1

        async def swallow(message: Message) -> None:
            pass

        await self.app(scope, receive, swallow)
        if self.how == "reset":
            raise DropConnection
        body = f"<html><body>{self.how} gateway error</body></html>".encode()
        await send(
            {
                "type": "http.response.start",
                "status": int(self.how),
                "headers": [
                    (b"content-type", b"text/html"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
