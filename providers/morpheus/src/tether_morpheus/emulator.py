"""
A local emulator of the Morpheus API Gateway v1.14.0, with its node behind it.

It answers like the real gateway did (routes, auth failures, 422 bodies, the
quirks listed in the provider docs: ``approve`` and ``pingsession`` always HTTP
200, re-wrapped 500s, in-band SSE errors, one active session per API key, a
second bid session leaking the first on chain) and can switch to today's gateway,
which has no session routes (``session_endpoints=False``). Time comes from the
injected ``clock`` and is read on each request: no background tasks. The real
gateway's cleanup task (every 60 s: close expired sessions) is replayed from the
clock when a request (or a control method) looks.

Needs the ``emulator`` extra (Starlette)::

    emulator = MorpheusEmulator(clock=clock.time, api_keys=[KEY])
    async with tether.testing.serve_asgi(emulator.app) as server:
        ...
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import platform
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tether.testing import FaultInjector


__all__ = ["DEFAULT_MODELS", "MorpheusEmulator", "model_id_for"]

VERSION: Final = "1.14.0"
#: What today's gateway (no session routes) says in its OpenAPI document.
HEAD_OPENAPI: Final = ("3.0.2", "0.0.0-dev")
API: Final = "/api/v1"
FALLBACK_NOTE: Final = "Private Key not set, using fallback key (FOR DEBUGGING ONLY)"
NO_PRIVATE_KEY: Final = "No private key found and no fallback key configured"
#: What v1.14.0's ``GET /`` says besides its version (``src/main.py``).
ROOT_DESCRIPTION: Final = "OpenAI-compatible API gateway for Morpheus blockchain models"
#: ``cleanup_expired_sessions`` in v1.14.0's ``src/main.py`` sleeps 60 s a round.
CLEANUP_INTERVAL: Final = 60.0
#: pydantic's message for a string that is not an integer.
#: Headers of every chat stream (v1.14.0 ``chat/index.py``; today's too).
SSE_HEADERS: Final = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
INT_PARSING: Final = (
    "Input should be a valid integer, unable to parse string as an integer"
)
ACCESS_TTL: Final = 30 * 60
REFRESH_TTL: Final = 7 * 24 * 3600
#: Routes only v1.14.0 (and the seed era) has, and routes only today's has.
SESSIONS_ONLY: Final = (
    f"{API}/session/",
    f"{API}/auth/login",
    f"{API}/auth/refresh",
    f"{API}/auth/private-key",
    f"{API}/auth/delegation",
    f"{API}/automation/",
)
HEAD_ONLY: Final = (f"{API}/billing/",)


def model_id_for(name: str) -> str:
    """
    The deterministic hex id the emulator gives a model name.
    """
    return "0x" + hashlib.sha256(f"model:{name}".encode()).hexdigest()


def _hex32(*parts: object) -> str:
    return "0x" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _address(label: str) -> str:
    return "0x" + hashlib.sha256(f"provider:{label}".encode()).hexdigest()[:40]


#: Models the emulator offers by default: name, type, and bids as
#: (provider label, price per second in wei, score).
DEFAULT_MODELS: Final[tuple[dict[str, Any], ...]] = (
    {
        "name": "llama-3.3-70b",
        "type": "LLM",
        "tags": ["llama", "chat"],
        "bids": [
            ("alpha", 10_000_000_000, 0.92),
            ("beta", 8_000_000_000, 0.71),
            ("gamma", 12_000_000_000, 0.55),
        ],
    },
    {
        "name": "mistral-31-24b",
        "type": "LLM",
        "tags": ["mistral"],
        "bids": [("delta", 5_000_000_000, 0.8)],
    },
    {
        "name": "text-embedding-bge-m3",
        "type": "EMBEDDINGS",
        "tags": ["embeddings"],
        "bids": [("epsilon", 1_000_000_000, 0.6)],
    },
)


@attrs.define
class _User:
    id: int
    email: str
    password: str = attrs.field(repr=False)
    name: str | None = None
    is_active: bool = True
    created_at: float = 0.0
    private_key: str | None = attrs.field(default=None, repr=False)
    private_key_at: tuple[float, float] | None = None
    automation: dict[str, Any] | None = None
    allowance: int = 0
    credits: Decimal = Decimal(100)


#: Faults that make chat fail for one model on today's gateway (see
#: :meth:`MorpheusEmulator.fail_model`).
ModelFault = Literal[
    "provider_closed_connection", "proxy_error", "session_not_found", "session_expired"
]
MODEL_FAULTS: Final = (
    "provider_closed_connection",
    "proxy_error",
    "session_not_found",
    "session_expired",
)


@attrs.define
class _Fault:
    kind: str
    times: int | None
    until: float | None


@attrs.define
class _Key:
    id: int
    user_id: int
    key: str = attrs.field(repr=False)
    name: str | None
    created_at: float
    is_active: bool = True
    is_default: bool = False
    legacy: bool = False

    @property
    def prefix(self) -> str:
        return self.key[:9]


@attrs.define
class _Bid:
    id: str
    provider: str
    model_id: str
    price: int
    score: float
    created_at: int


@attrs.define
class _NodeSession:
    id: str
    bid_id: str
    provider: str
    model_id: str
    opened_at: float
    ends_at: float
    stake: int
    closed_at: float | None = None
    killed: str | None = None
    early_close: bool = False


@attrs.define
class _Row:
    session_id: str
    key_id: int
    user_id: int
    model: str
    type: str
    created_at: float
    expires_at: float
    is_active: bool = True


class _Problem(Exception):  # noqa: N818 -- internal control flow
    def __init__(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _detail(
    status: int, detail: str, headers: Mapping[str, str] | None = None
) -> _Problem:
    return _Problem(status, {"detail": detail}, headers)


def _int(raw: str, loc: list[Any]) -> int:
    """
    *raw* as an integer, or FastAPI's 422 ``int_parsing`` error at *loc*.
    """
    try:
        return int(raw)
    except ValueError:
        error = {"type": "int_parsing", "loc": loc, "msg": INT_PARSING, "input": raw}
        raise _Problem(422, {"detail": [error]}) from None


def _missing(loc: list[Any]) -> dict[str, Any]:
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}


def _int_field(
    value: Any, loc: list[Any], *, optional: bool = True
) -> dict[str, Any] | None:
    """
    Pydantic's (lax) error for *value* in an ``int`` field, or ``None``.

    As pydantic 2 in lax mode: booleans, whole floats and strings such as
    ``" 12 "``, ``"1_000"`` or ``"3.0"`` pass; ``None`` only in an ``Optional``.
    """
    if (value is None and optional) or isinstance(value, int):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            int(text)
        except ValueError:
            if re.fullmatch(r"[+-]?\d+\.0*", text) is None:
                return {
                    "type": "int_parsing",
                    "loc": loc,
                    "msg": INT_PARSING,
                    "input": value,
                }
        return None
    if isinstance(value, float) and value.is_integer():
        return None
    if isinstance(value, float):
        return {
            "type": "int_from_float",
            "loc": loc,
            "msg": "Input should be a valid integer, got a number with a fractional part",
            "input": value,
        }
    return {
        "type": "int_type",
        "loc": loc,
        "msg": "Input should be a valid integer",
        "input": value,
    }


def _lax_int(value: Any) -> int:
    """
    *value* as pydantic's lax mode makes it an ``int`` (already checked).
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            return int(float(text))
    return int(value)


def _money(value: Decimal) -> str:
    """
    A decimal as the gateway writes it: fixed point, no trailing zeros.
    """
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MorpheusEmulator:
    """
    The Morpheus API Gateway v1.14.0 (and today's session-less gateway), locally.

    Args:
        clock: Where time comes from (pass ``ManualClock().time`` in tests).
        api_keys: Keys accepted from the start, owned by ``user@example.com``
            (password ``password123``).
        models: Models and their bids (see :data:`DEFAULT_MODELS`).
        default_model: The silent fallback for unknown models (the real
            ``DEFAULT_FALLBACK_MODEL`` is ``mistral-31-24b``).
        session_endpoints: ``False`` behaves like today's gateway: no
            ``/api/v1/session/*`` routes and a shared pool behind chat; no
            seed-era account routes (``/auth/login``, ``/auth/refresh``,
            ``/auth/private-key``, ``/auth/delegation*``) and no
            ``/automation/settings``; credit billing instead
            (``/api/v1/billing/balance``, 402 ``insufficient_balance``),
            ``x-request-id`` and ``x-ratelimit-*`` headers, and per-model chat
            faults (:meth:`fail_model`).
        serve_openapi: Serve ``/openapi.json`` and ``/api/v1/openapi.json``.
        automation_feature_enabled: The system-wide ``AUTOMATION_FEATURE_ENABLED``.
        require_approval: Opening a session needs an approved allowance of
            price x duration (consumed on open).
        private_key_fallback: Whether the gateway has a ``FALLBACK_PRIVATE_KEY``
            (answers then carry a ``note``).
        cleanup_interval: Seconds between rounds of the gateway's cleanup task
            (v1.14.0: 60; the first round runs at start): each round marks
            sessions closed on chain inactive, then closes every session past
            its expiry on chain and marks it inactive, so ``pingsession`` then
            says ``no_session``. ``None``: no cleanup task. Session era only.
        proxy_router_url: The gateway's ``PROXY_ROUTER_URL``, which a dead
            ping's ``error`` names.
        seed: Seed for ids.

    Attributes:
        app: The ASGI app, wrapped in :class:`~tether.testing.FaultInjector`.
        faults: The same injector, to set ``rate``/``kinds``/``seed``.
        inference_count: Inferences run (chat and pings).
        requests_log: ``(method, path, query, json body)`` of every request.
        pool_renewals: Pool sessions today's gateway renewed after the node
            said ``session expired`` (each one retried the chat once).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        api_keys: Sequence[str] = (),
        models: Sequence[Mapping[str, Any]] = DEFAULT_MODELS,
        default_model: str = "mistral-31-24b",
        session_endpoints: bool = True,
        serve_openapi: bool = True,
        automation_feature_enabled: bool = True,
        require_approval: bool = False,
        private_key_fallback: bool = True,
        cleanup_interval: float | None = CLEANUP_INTERVAL,
        proxy_router_url: str = "http://localhost:8082",
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.cleanup_interval = cleanup_interval
        self.proxy_router_url = proxy_router_url.rstrip("/")
        self._started = clock()
        #: The last cleanup round run (rounds are numbered from 0, at start).
        self._cleanup_round = -1
        self.session_endpoints = session_endpoints
        self.serve_openapi = serve_openapi
        self.automation_feature_enabled = automation_feature_enabled
        self.require_approval = require_approval
        self.private_key_fallback = private_key_fallback
        self.default_model = default_model
        #: ``(message, type)`` that the next approvals fail with, in-band.
        self.approve_error: tuple[str, str] | None = None
        #: A message for pingsession's ``error`` status.
        self.ping_error: str | None = None
        #: Make closing on chain fail ("Error closing session: 500: ...").
        self.close_fails = False
        self.inference_count = 0
        self.pool_renewals = 0
        self.requests_log: list[tuple[str, str, str, Any]] = []
        self._model_faults: dict[str, _Fault] = {}
        self._secret = hashlib.sha256(f"jwt:{seed}".encode()).digest()
        self._counter = seed * 1000
        self._users: dict[int, _User] = {}
        self._keys: dict[int, _Key] = {}
        self._delegations: dict[int, dict[str, Any]] = {}
        self._models: dict[str, dict[str, Any]] = {}
        self._bids: dict[str, _Bid] = {}
        self._node: dict[str, _NodeSession] = {}
        self._rows: list[_Row] = []
        self._failed_providers: set[str] = set()
        self.locked_stakes: list[tuple[str, int]] = []
        for spec in models:
            self.add_model(
                str(spec["name"]),
                model_type=str(spec.get("type", "LLM")),
                tags=list(spec.get("tags", ())),
                bids=list(spec.get("bids", ())),
                active=bool(spec.get("active", True)),
            )
        if api_keys:
            user = self.add_user("user@example.com", "password123", name="Test User")
            for key in api_keys:
                self.add_api_key(user, key)
        self._starlette = Starlette(routes=self._routes())
        self.faults = FaultInjector(self._app)
        self.app = self.faults

    # -- control (for tests; not HTTP routes) -----------------------------------

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def add_model(
        self,
        name: str,
        *,
        model_type: str = "LLM",
        tags: Sequence[str] = (),
        bids: Sequence[tuple[str, int, float]] = (),
        active: bool = True,
    ) -> str:
        """
        Add a model (and its bids); return its hex id.
        """
        model_id = model_id_for(name)
        self._models[model_id] = {
            "Id": model_id,
            "Name": name,
            "ModelType": model_type,
            "Tags": list(tags),
            "CreatedAt": 1_735_689_600,
            "IsDeleted": False,
            "active": active,
        }
        for i, (label, price, score) in enumerate(bids):
            bid_id = _hex32("bid", name, i)
            self._bids[bid_id] = _Bid(
                id=bid_id,
                provider=_address(label),
                model_id=model_id,
                price=int(price),
                score=float(score),
                created_at=1_735_689_600 + i,
            )
        return model_id

    def add_user(self, email: str, password: str, *, name: str | None = None) -> int:
        """
        Add a user; return its id.
        """
        user_id = len(self._users) + 1
        self._users[user_id] = _User(
            id=user_id,
            email=email,
            password=password,
            name=name,
            created_at=self.clock(),
        )
        return user_id

    def add_api_key(
        self,
        user_id: int,
        key: str | None = None,
        *,
        legacy: bool = False,
        default: bool | None = None,
    ) -> str:
        """
        Give *user_id* an API key (a new one when *key* is ``None``); return it.

        A ``legacy`` key (no ``encrypted_key``) authenticates by its prefix alone,
        as in v1.14.0. ``default=None`` marks the user's first key as its
        default (as if set with ``PUT /auth/keys/{id}/default``); keys made by
        ``POST /auth/keys`` never are (``is_default`` defaults to false).
        """
        if key is None:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            prefix = "".join(secrets.choice(alphabet) for _ in range(6))
            key = f"sk-{prefix}.{secrets.token_hex(32)}"
        key_id = len(self._keys) + 1
        self._keys[key_id] = _Key(
            id=key_id,
            user_id=user_id,
            key=key,
            name=None,
            created_at=self.clock(),
            is_default=not any(k.user_id == user_id for k in self._keys.values())
            if default is None
            else default,
            legacy=legacy,
        )
        return key

    def drop_user(self, email: str) -> None:
        """
        Delete a user's row but keep its keys (a dangling key, as after a
        partial cleanup): the keys then answer 401 ``API key not associated
        with a valid user``.
        """
        user = next(u for u in self._users.values() if u.email == email)
        del self._users[user.id]

    def issue_token(self, email: str = "user@example.com") -> str:
        """
        A valid access JWT for *email*, without logging in.
        """
        user = next(u for u in self._users.values() if u.email == email)
        return self._jwt(user.id, "access", ACCESS_TTL)

    def model_id(self, name: str) -> str:
        """
        The hex id of the model called *name*.
        """
        return str(next(m["Id"] for m in self._models.values() if m["Name"] == name))

    def bids_for(self, name: str) -> list[str]:
        """
        The bid ids of the model called *name*, best score first.
        """
        return [b.id for b in self._rated(self.model_id(name))]

    def bid_provider(self, bid_id: str) -> str:
        """
        The provider address behind *bid_id*.
        """
        return self._bids[bid_id].provider

    def fail_provider(self, address: str) -> None:
        """
        Make every session open on *address* fail, as a provider that refuses.
        """
        self._failed_providers.add(address)

    def kill_session(self, session_id: str, reason: str = "session not found") -> None:
        """
        End a session on the node behind the gateway's back (provider death).
        """
        self._node[session_id].killed = reason

    def live_sessions(self) -> list[str]:
        """
        Sessions the gateway holds active for some key and the node still serves.
        """
        self._catch_up()
        now = self.clock()
        return [
            r.session_id
            for r in self._rows
            if r.is_active
            and r.expires_at > now
            and self._node_alive(r.session_id, now)
        ]

    def onchain_open_sessions(self) -> list[str]:
        """
        Sessions still open on chain (leaked ones included) and not past EndsAt.
        """
        self._catch_up()
        now = self.clock()
        return [
            s.id for s in self._node.values() if s.closed_at is None and s.ends_at > now
        ]

    def active_session_for(self, key: str) -> str | None:
        """
        The session the gateway's database holds active for *key*.
        """
        self._catch_up()
        for row in self._rows:
            if row.is_active and self._keys[row.key_id].key == key:
                return row.session_id
        return None

    def allowance(self, email: str = "user@example.com") -> int:
        """
        The MOR allowance approved by *email*.
        """
        return next(u.allowance for u in self._users.values() if u.email == email)

    def set_balance(
        self, amount: Decimal | str | float, email: str = "user@example.com"
    ) -> None:
        """
        Set *email*'s credit balance (today's gateway; USD, default 100).

        At zero or below, chat answers 402 ``insufficient_balance``.
        """
        user = next(u for u in self._users.values() if u.email == email)
        user.credits = Decimal(str(amount))

    def fail_model(
        self,
        model: str,
        fault: ModelFault,
        *,
        times: int | None = None,
        until: float | None = None,
    ) -> None:
        """
        Make today's gateway fail chats on *model* (a name or hex id).

        Faults, as the real gateway shows them:

        * ``"provider_closed_connection"``: 502 ``{"error": {"message":
          "provider closed connection", "type": "proxy_error", "status": 502}}``
          (JSON, for streams too: the gateway fails before the first byte);
        * ``"proxy_error"``: the same error in-band: HTTP 200 with one SSE event
          ``data: {"error": {...}}`` and no ``[DONE]`` for streams (JSON 502
          otherwise);
        * ``"session_not_found"``: the pool session was lost on the node; every
          chat answers 500 ``session not found`` (in-band for streams), as the
          gateway neither renews nor fails over on it;
        * ``"session_expired"``: the node says ``session expired``; the gateway
          renews the pool session and retries once, so the chat succeeds (see
          :attr:`pool_renewals`). Defaults to ``times=1``.

        Args:
            model: The model.
            fault: One of the above.
            times: How many chats fail (``None``: until cleared).
            until: The clock time at which the fault clears (the gateway's own
                cleanup), or ``None``.
        """
        if fault not in MODEL_FAULTS:
            msg = f"unknown fault {fault!r}; one of {', '.join(MODEL_FAULTS)}"
            raise ValueError(msg)
        if fault == "session_expired" and times is None:
            times = 1
        self._model_faults[self._resolve(model)] = _Fault(
            kind=fault, times=times, until=until
        )

    def clear_model_faults(self, model: str | None = None) -> None:
        """
        Clear the chat faults of *model*, or of every model.
        """
        if model is None:
            self._model_faults.clear()
        else:
            self._model_faults.pop(self._resolve(model), None)

    # -- plumbing ----------------------------------------------------------------

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self._starlette(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_tagged(message: Any) -> None:
            if message.get("type") == "http.response.start":
                # Every answer passes the gateway's middleware: the CORS one
                # adds "Vary: Origin", the timing one "X-Process-Time".
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"vary"
                ]
                vary = [
                    v for k, v in message.get("headers", []) if k.lower() == b"vary"
                ]
                if vary and b"Origin" not in vary[0]:
                    vary = [vary[0] + b", Origin"]
                headers.append((b"vary", vary[0] if vary else b"Origin"))
                elapsed = time.perf_counter() - started
                headers.append((b"x-process-time", str(elapsed).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self._starlette(scope, receive, send_tagged)

    def _routes(self) -> list[Route]:
        r = Route
        return [
            r("/", self._handler(self._root), methods=["GET"]),
            r("/health", self._handler(self._health), methods=["GET"]),
            r("/openapi.json", self._handler(self._openapi), methods=["GET"]),
            r(f"{API}/openapi.json", self._handler(self._openapi), methods=["GET"]),
            r(f"{API}/models", self._handler(self._list_models), methods=["GET"]),
            r(
                f"{API}/models/allmodels",
                self._handler(self._all_models),
                methods=["GET"],
            ),
            r(
                f"{API}/models/ratedbids",
                self._handler(self._rated_bids),
                methods=["GET"],
            ),
            r(
                f"{API}/session/approve",
                self._handler(self._approve, session=True),
                methods=["POST"],
            ),
            r(
                f"{API}/session/bidsession",
                self._handler(self._bid_session, session=True),
                methods=["POST"],
            ),
            r(
                f"{API}/session/modelsession",
                self._handler(self._model_session, session=True),
                methods=["POST"],
            ),
            r(
                f"{API}/session/closesession",
                self._handler(self._close_session, session=True),
                methods=["POST"],
            ),
            r(
                f"{API}/session/pingsession",
                self._handler(self._ping_session, session=True),
                methods=["POST"],
            ),
            r(f"{API}/chat/completions", self._handler(self._chat), methods=["POST"]),
            r(
                f"{API}/billing/balance",
                self._handler(self._balance, era="head"),
                methods=["GET"],
            ),
            r(
                f"{API}/automation/settings",
                self._handler(self._automation, era="sessions"),
                methods=["GET", "PUT"],
            ),
            r(
                f"{API}/auth/register",
                self._handler(self._register),
                methods=["POST", "DELETE"],
            ),
            r(
                f"{API}/auth/login",
                self._handler(self._login, era="sessions"),
                methods=["POST"],
            ),
            r(
                f"{API}/auth/refresh",
                self._handler(self._refresh, era="sessions"),
                methods=["POST"],
            ),
            r(f"{API}/auth/me", self._handler(self._me), methods=["GET"]),
            r(
                f"{API}/auth/keys",
                self._handler(self._keys_route),
                methods=["GET", "POST"],
            ),
            r(
                f"{API}/auth/keys/{{key_id}}",
                self._handler(self._delete_key),
                methods=["DELETE"],
            ),
            r(
                f"{API}/auth/private-key",
                self._handler(self._private_key, era="sessions"),
                methods=["GET", "POST", "DELETE"],
            ),
            r(
                f"{API}/auth/delegation",
                self._handler(self._delegation, era="sessions"),
                methods=["GET", "POST"],
            ),
            r(
                f"{API}/auth/delegation/active",
                self._handler(self._active_delegation, era="sessions"),
                methods=["GET"],
            ),
            r(
                f"{API}/auth/delegation/{{delegation_id}}",
                self._handler(self._delete_delegation, era="sessions"),
                methods=["DELETE"],
            ),
        ]

    def _handler(
        self,
        fn: Callable[[Request], Any],
        *,
        session: bool = False,
        era: Literal["both", "sessions", "head"] = "both",
    ) -> Callable[[Request], Any]:
        """
        An endpoint for *fn*; *era* says which gateway has the route
        (``"sessions"``: v1.14.0 only, ``"head"``: today's only).
        """
        if session:
            era = "sessions"

        async def endpoint(request: Request) -> Response:
            response = await serve(request)
            if not self.session_endpoints:
                # Today's gateway tags every answer with a request id.
                response.headers["x-request-id"] = f"req-{self._next():08x}"
            return response

        def present() -> bool:
            if era == "sessions":
                return self.session_endpoints
            return era == "both" or not self.session_endpoints

        async def serve(request: Request) -> Response:
            raw = await request.body()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            self.requests_log.append(
                (request.method, request.url.path, request.url.query, body)
            )
            if not present():
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            self._catch_up()
            try:
                result = await fn(request)
            except _Problem as problem:
                return JSONResponse(
                    problem.body, status_code=problem.status, headers=problem.headers
                )
            except HTTPException as exc:  # pragma: no cover - Starlette's own
                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return endpoint

    def _iso(self, ts: float | None = None) -> str:
        """
        A time as the gateway writes its ``DateTime`` columns: naive UTC.
        """
        return self._iso_tz(ts).removesuffix("+00:00")

    def _iso_tz(self, ts: float | None = None) -> str:
        """
        A time with its zone (``timestamptz`` columns, today's headers).
        """
        return datetime.fromtimestamp(
            self.clock() if ts is None else ts, UTC
        ).isoformat()

    async def _json_body(self, request: Request, *, required: bool = True) -> Any:
        raw = await request.body()
        if not raw:
            if required:
                raise _Problem(422, {"detail": [_missing(["body"])]})
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _Problem(
                422,
                {
                    "detail": [
                        {
                            "type": "json_invalid",
                            "loc": ["body", getattr(exc, "pos", 0)],
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": str(exc)},
                        }
                    ]
                },
            ) from None

    @staticmethod
    def _object_body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Problem(
                422,
                {
                    "detail": [
                        {
                            "type": "model_attributes_type",
                            "loc": ["body"],
                            "msg": "Input should be a valid dictionary or object to extract fields from",
                            "input": body,
                        }
                    ]
                },
            )
        return body

    # -- auth ----------------------------------------------------------------

    def _api_key(self, request: Request, *, check_active: bool) -> _Key:
        try:
            return self._check_api_key(request, check_active=check_active)
        except _Problem as problem:
            if problem.status == 401:  # noqa: PLR2004
                # Every API-key 401 challenges, in v1.14.0 (get_api_key_user,
                # get_current_api_key) as today.
                problem.headers.setdefault("WWW-Authenticate", "Bearer")
            raise

    def _check_api_key(self, request: Request, *, check_active: bool) -> _Key:
        header = request.headers.get("authorization")
        if not header:
            raise _detail(401, "API key missing", {"WWW-Authenticate": "Bearer"})
        key = header.removeprefix("Bearer ").strip()
        if not key.startswith("sk-"):
            raise _detail(401, "Invalid API key format. Must start with sk-")
        prefix = key[:9]
        found = next((k for k in self._keys.values() if k.prefix == prefix), None)
        if found is None or (
            not found.legacy and not hmac.compare_digest(found.key, key)
        ):
            raise _detail(401, "Invalid API key")
        if check_active and not found.is_active:
            # get_current_api_key (chat) filters revoked keys; the session
            # routes' get_api_key_user did not in v1.14.0.
            raise _detail(401, "Invalid API key")
        if found.user_id not in self._users:
            raise _detail(401, "API key not associated with a valid user")
        return found

    def _jwt(self, user_id: int, kind: str, ttl: float) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(
            json.dumps(
                {
                    "sub": str(user_id),
                    "type": kind,
                    "exp": int(self.clock() + ttl),
                    "jti": self._next(),
                }
            ).encode()
        )
        signature = hmac.new(
            self._secret, f"{header}.{payload}".encode(), hashlib.sha256
        )
        return f"{header}.{payload}.{_b64(signature.digest())}"

    def _verify_jwt(self, token: str, kind: str) -> _User:
        invalid = _detail(
            401, "Could not validate credentials", {"WWW-Authenticate": "Bearer"}
        )
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(
                self._secret, f"{header}.{payload}".encode(), hashlib.sha256
            )
            if not hmac.compare_digest(_b64(expected.digest()), signature):
                raise invalid
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            raise invalid from None
        if claims.get("type") != kind or float(claims.get("exp", 0)) <= self.clock():
            raise invalid
        user = self._users.get(int(claims.get("sub", 0)))
        if user is None or not user.is_active:
            raise invalid
        return user

    def _jwt_user(self, request: Request) -> _User:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise _detail(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})
        return self._verify_jwt(header[7:].strip(), "access")

    # -- service routes ----------------------------------------------------------

    async def _root(self, _request: Request) -> Any:
        # v1.14.0 src/main.py root(); the version is the build's BUILD_VERSION.
        return {
            "name": "Morpheus API Gateway",
            "version": VERSION,
            "description": ROOT_DESCRIPTION,
            "documentation": {"swagger_ui": "/docs"},
        }

    async def _health(self, _request: Request) -> Any:
        # v1.14.0 src/main.py health_check(): the keys and their meaning; the
        # deployment's values (container id, kernel, cache state) are made up.
        now = self.clock()
        models = self._active_models()
        uptime = max(0, int(now - self._started))
        days, rest = divmod(uptime, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
        if seconds or not parts:
            parts.append(f"{seconds}s")
        return {
            "status": "ok",
            "timestamp": self._iso(now),
            "version": VERSION,
            "database": "healthy",
            "model_service": {
                "status": "healthy" if models else "warning: no models available",
                "model_count": len(models),
                "cache_info": {
                    "cached_models": len(models),
                    "cached_blockchain_ids": len(models),
                    "cache_expiry": self._iso(now + 300),
                    "seconds_until_expiry": 300.0,
                    "last_hash": hashlib.sha256(
                        json.dumps(sorted(m["Id"] for m in models)).encode()
                    ).hexdigest(),
                    "last_etag": None,
                    "cache_duration": 300,
                },
                "active_models_url": "https://active.dev.mor.org/active_models.json",
                "default_fallback_model": self.default_model,
                "default_fallback_tts_model": "tts-kokoro",
                "default_fallback_stt_model": "whisper-1",
                "default_fallback_embeddings_model": "text-embedding-bge-m3",
            },
            "container": {
                "id": str(uuid.UUID(bytes=self._secret[:16], version=4)),
                "system": "Linux-emulator",
                "python_version": platform.python_version(),
            },
            "uptime": {
                "seconds": uptime,
                "human_readable": " ".join(parts),
                "started_at": self._iso(self._started),
            },
        }

    async def _openapi(self, _request: Request) -> Any:
        if not self.serve_openapi:
            raise _detail(404, "Not Found")
        paths: dict[str, Any] = {}
        for route in self._starlette.routes:
            path = getattr(route, "path", "")
            if path.endswith("openapi.json"):
                continue
            if path.startswith(
                SESSIONS_ONLY if not self.session_endpoints else HEAD_ONLY
            ):
                continue
            methods = sorted((getattr(route, "methods", None) or set()) - {"HEAD"})
            paths[path] = {
                m.lower(): {"responses": {"200": {"description": "OK"}}}
                for m in methods
            }
        openapi, version = ("3.1.0", VERSION)
        if not self.session_endpoints:
            openapi, version = HEAD_OPENAPI
        return {
            "openapi": openapi,
            "info": {"title": "Morpheus API Gateway", "version": version},
            "paths": paths,
        }

    # -- models ------------------------------------------------------------------

    def _active_models(self) -> list[dict[str, Any]]:
        return [m for m in self._models.values() if m["active"] and not m["IsDeleted"]]

    @staticmethod
    def _model_json(m: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": m["Name"],
            "blockchainID": m["Id"],
            "created": m["CreatedAt"],
            "tags": list(m["Tags"]),
            "modelType": m["ModelType"],
        }

    async def _list_models(self, _request: Request) -> Any:
        return {
            "object": "list",
            "data": [self._model_json(m) for m in self._active_models()],
        }

    async def _all_models(self, _request: Request) -> Any:
        models = [m for m in self._models.values() if not m["IsDeleted"]]
        return {"object": "list", "data": [self._model_json(m) for m in models]}

    def _rated(self, model_id: str) -> list[_Bid]:
        bids = [b for b in self._bids.values() if b.model_id == model_id]
        return sorted(bids, key=lambda b: b.score, reverse=True)

    async def _rated_bids(self, request: Request) -> Any:
        model_id = request.query_params.get("model_id")
        if model_id is None:
            raise _Problem(422, {"detail": [_missing(["query", "model_id"])]})
        if model_id not in self._models:
            raise _detail(
                500,
                'Error fetching rated bids: HTTP 400: {"error":"model not found"}',
            )
        return {
            "bids": [
                {
                    "ID": b.id,
                    "Bid": {
                        "Id": b.id,
                        "Provider": b.provider,
                        "ModelAgentId": b.model_id,
                        "PricePerSecond": b.price,
                        "Nonce": 0,
                        "CreatedAt": b.created_at,
                        "DeletedAt": 0,
                    },
                    "Score": b.score,
                }
                for b in self._rated(model_id)
            ]
        }

    def _resolve(self, model: str | None) -> str:
        """
        Name or id -> id; unknown -> the default, silently (as v1.14.0 does).
        """
        if model:
            if model in self._models and not self._models[model]["IsDeleted"]:
                return model
            for m in self._active_models():
                if m["Name"] == model:
                    return str(m["Id"])
        for m in self._active_models():
            if m["Name"] == self.default_model:
                return str(m["Id"])
        return str(self._active_models()[0]["Id"])

    # -- node ------------------------------------------------------------------------

    def _node_alive(self, session_id: str, now: float) -> bool:
        node = self._node.get(session_id)
        return bool(
            node is not None
            and node.closed_at is None
            and node.killed is None
            and node.ends_at + 5 >= now
        )

    def _node_error(self, session_id: str, now: float) -> str | None:
        node = self._node.get(session_id)
        if node is None or node.killed is not None or node.closed_at is not None:
            return (
                node.killed if node and node.killed else None
            ) or "session not found"
        if node.ends_at + 5 < now:
            return "session expired"
        return None

    def _proxy_error(self, what: str, status: int, error: str) -> _Problem:
        inner = json.dumps({"error": error}, separators=(",", ":"))
        return _detail(500, f"Error from proxy router: {what}: HTTP {status}: {inner}")

    def _open_on(self, bid: _Bid, user: _User, duration: int) -> _NodeSession:
        cost = bid.price * duration
        if self.require_approval:
            if user.allowance < cost:
                raise self._proxy_error(
                    "Failed to create session", 500, "ERC20: insufficient allowance"
                )
            user.allowance -= cost
        now = self.clock()
        node = _NodeSession(
            id=_hex32("session", self._next()),
            bid_id=bid.id,
            provider=bid.provider,
            model_id=bid.model_id,
            opened_at=now,
            ends_at=now + duration,
            stake=cost,
        )
        self._node[node.id] = node
        return node

    def _open_by_model(self, model_id: str, user: _User, duration: int) -> _NodeSession:
        reasons = []
        for bid in self._rated(model_id):
            if bid.provider in self._failed_providers:
                reasons.append(
                    {"provider": bid.provider, "reason": "provider refused session"}
                )
                continue
            return self._open_on(bid, user, duration)
        raise self._proxy_error(
            "Failed to create session",
            500,
            f"no provider accepting session: {json.dumps(reasons, separators=(',', ':'))}",
        )

    def _close_on_chain(self, session_id: str, at: float | None = None) -> None:
        node = self._node.get(session_id)
        if node is None or node.closed_at is not None:
            return  # "already closed" counts as success
        now = self.clock() if at is None else at
        node.closed_at = now
        if now < node.ends_at:
            node.early_close = True
            self.locked_stakes.append((node.id, node.stake))

    def _catch_up(self) -> None:
        """
        Run the cleanup rounds the real gateway would have run by now.

        ``cleanup_expired_sessions`` (v1.14.0 ``src/main.py``) runs at start and
        then every ``cleanup_interval`` seconds: first ``synchronize_sessions``
        marks rows whose session is closed on chain inactive, then every active
        row past ``expires_at`` is closed on chain (``close_session``) and marked
        inactive (an expired row is marked even when the close fails).
        """
        interval = self.cleanup_interval
        if interval is None or not self.session_endpoints:
            return
        last = math.floor((self.clock() - self._started) / interval)
        while self._cleanup_round < last:
            active = [r for r in self._rows if r.is_active]
            if not active:
                break
            due = min(self._cleanup_due(r, interval) for r in active)
            round_ = max(self._cleanup_round + 1, due)
            if round_ > last:
                break
            at = self._started + round_ * interval
            for row in active:
                node = self._node.get(row.session_id)
                if node is None or (
                    node.closed_at is not None and node.closed_at <= at
                ):
                    row.is_active = False
            for row in active:
                if row.is_active and row.expires_at < at:
                    if not self.close_fails:
                        self._close_on_chain(row.session_id, at=at)
                    row.is_active = False
            self._cleanup_round = round_
        self._cleanup_round = last

    def _cleanup_due(self, row: _Row, interval: float) -> int:
        """
        The first cleanup round that acts on *row* (after its expiry, or at or
        after its session's close on chain).
        """
        due = math.floor((row.expires_at - self._started) / interval) + 1
        node = self._node.get(row.session_id)
        if node is not None and node.closed_at is not None:
            due = min(due, math.ceil((node.closed_at - self._started) / interval))
        return due

    def _active_row(self, key: _Key) -> _Row | None:
        return next((r for r in self._rows if r.is_active and r.key_id == key.id), None)

    def _check_private_key(self, user: _User) -> str | None:
        """
        The ``note`` to add, or raise when no key and no fallback exist.
        """
        if user.private_key is not None:
            return None
        if not self.private_key_fallback:
            raise _detail(400, NO_PRIVATE_KEY)
        return FALLBACK_NOTE

    # -- session routes ---------------------------------------------------------------

    @staticmethod
    def _int_query(request: Request, name: str) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            raise _Problem(422, {"detail": [_missing(["query", name])]})
        return _int(raw, ["query", name])

    async def _session_data(self, request: Request) -> dict[str, Any]:
        body = self._object_body(await self._json_body(request))
        errors = []
        result: dict[str, Any] = {
            "sessionDuration": 3600,
            "directPayment": False,
            "failover": False,
        }
        value = body.get("sessionDuration", 3600)
        error = _int_field(value, ["body", "sessionDuration"], optional=False)
        if error is not None:
            errors.append(error)
        else:
            result["sessionDuration"] = _lax_int(value)
        for name in ("directPayment", "failover"):
            flag = body.get(name, False)
            if isinstance(flag, bool):
                result[name] = flag
            elif flag in (0, 1, "true", "false", "0", "1"):
                result[name] = flag in (1, "true", "1")
            else:
                errors.append(
                    {
                        "type": "bool_parsing",
                        "loc": ["body", name],
                        "msg": "Input should be a valid boolean, unable to interpret input",
                        "input": flag,
                    }
                )
        if errors:
            raise _Problem(422, {"detail": errors})
        return result

    async def _approve(self, request: Request) -> Any:
        key = self._api_key(request, check_active=False)
        amount = self._int_query(request, "amount")
        user = self._users[key.user_id]
        if user.private_key is None and not self.private_key_fallback:
            return {
                "error": {
                    "message": f"{NO_PRIVATE_KEY}. Please set up your private key.",
                    "type": "PrivateKeyNotFound",
                }
            }
        note = None if user.private_key is not None else FALLBACK_NOTE
        if self.approve_error is not None:
            message, etype = self.approve_error
            body: dict[str, Any] = {"error": {"message": message, "type": etype}}
            if note:
                body["note"] = note
            return body
        user.allowance += amount
        result: dict[str, Any] = {"tx": _hex32("tx", self._next())}
        if note:
            result["note"] = note
        return result

    async def _model_session(self, request: Request) -> Any:
        key = self._api_key(request, check_active=False)
        model_id = request.query_params.get("model_id")
        if model_id is None:
            raise _Problem(422, {"detail": [_missing(["query", "model_id"])]})
        data = await self._session_data(request)
        user = self._users[key.user_id]
        note = self._check_private_key(user)
        resolved = self._resolve(model_id)
        now = self.clock()
        row = self._active_row(key)
        if row is not None and row.expires_at <= now:
            row.is_active = False
            row = None
        if row is not None and row.model == resolved:
            # Same model: the existing session comes back; the new duration is ignored.
            session_id = row.session_id
        else:
            if row is not None:
                # A different model: the old one is closed on chain (early).
                self._close_on_chain(row.session_id)
                row.is_active = False
            node = self._open_by_model(resolved, user, data["sessionDuration"])
            self._rows.append(
                _Row(
                    session_id=node.id,
                    key_id=key.id,
                    user_id=user.id,
                    model=resolved,
                    type="automated",
                    created_at=now,
                    expires_at=now + data["sessionDuration"],
                )
            )
            session_id = node.id
        result = {
            "success": True,
            "message": "Session created and associated with API key",
            "session_id": session_id,
            "api_key_prefix": key.prefix,
            "model": model_id,
        }
        # The real v1.14.0 model-session reply carries no "note" (the bid one does).
        del note
        return result

    async def _bid_session(self, request: Request) -> Any:
        key = self._api_key(request, check_active=False)
        bid_id = request.query_params.get("bid_id")
        if bid_id is None:
            raise _Problem(422, {"detail": [_missing(["query", "bid_id"])]})
        data = await self._session_data(request)
        user = self._users[key.user_id]
        try:
            note = self._check_private_key(user)
        except _Problem as problem:
            # Raised inside the handler's try, so "except Exception" re-wraps it.
            raise _detail(
                500, f"Unexpected error: {problem.status}: {problem.body['detail']}"
            ) from None
        bid = self._bids.get(bid_id)
        if bid is None:
            raise self._proxy_error("Failed to get bid", 400, "bid not found")
        if bid.provider in self._failed_providers:
            raise self._proxy_error(
                "Failed to create bid session", 500, "provider refused session"
            )
        # deactivate_existing_sessions: DB only; the old session stays open on chain.
        for row in self._rows:
            if row.is_active and row.key_id == key.id:
                row.is_active = False
        node = self._open_on(bid, user, data["sessionDuration"])
        now = self.clock()
        self._rows.append(
            _Row(
                session_id=node.id,
                key_id=key.id,
                user_id=user.id,
                model=bid_id,
                type="bid",
                created_at=now,
                expires_at=now + data["sessionDuration"],
            )
        )
        result = {
            "success": True,
            "message": "Session created and associated with API key",
            "session_id": node.id,
            "api_key_prefix": key.prefix,
        }
        if note:
            result["note"] = note
        return result

    async def _close_session(self, request: Request) -> Any:
        key = self._api_key(request, check_active=False)
        row = self._active_row(key)
        if row is None:
            return {
                "success": True,
                "message": "No active session found to close",
                "session_id": None,
            }
        if row.expires_at <= self.clock():
            row.is_active = False
            return {
                "success": True,
                "message": "Expired session marked as inactive",
                "session_id": row.session_id,
            }
        if self.close_fails:
            raise _detail(500, "Error closing session: 500: Failed to close session")
        self._close_on_chain(row.session_id)
        row.is_active = False
        return {
            "success": True,
            "message": "Session closed successfully",
            "session_id": row.session_id,
        }

    async def _ping_session(self, request: Request) -> Any:
        key = self._api_key(request, check_active=False)
        if self.ping_error is not None:
            return {
                "status": "error",
                "message": f"Error checking session status: {self.ping_error}",
                "success": False,
            }
        row = self._active_row(key)
        if row is None:
            return {
                "status": "no_session",
                "message": "No active session found for this API key",
                "success": False,
            }
        now = self.clock()
        if row.expires_at <= now:
            row.is_active = False
            return {
                "status": "expired",
                "message": "Session is expired and has been marked as inactive",
                "session_id": row.session_id,
                "success": False,
            }
        # The real gateway streams a chat "test" through the session.
        self.inference_count += 1
        error = self._node_error(row.session_id, now)
        if error is not None:
            self._close_on_chain(row.session_id)
            row.is_active = False
            # str() of httpx's HTTPStatusError from raise_for_status() on the
            # streamed answer: the node's body is never read, so it is not named.
            return {
                "status": "dead",
                "message": "Session is dead and has been closed",
                "session_id": row.session_id,
                "success": False,
                "error": (
                    "Server error '500 Internal Server Error' for url "
                    f"'{self.proxy_router_url}/v1/chat/completions'\n"
                    "For more information check: "
                    "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/500"
                ),
            }
        return {
            "status": "alive",
            "message": "Session is alive",
            "session_id": row.session_id,
            "success": True,
        }

    # -- chat ------------------------------------------------------------------------------

    @staticmethod
    def _validate_chat(body: dict[str, Any]) -> None:
        errors = []
        messages = body.get("messages")
        if messages is None:
            errors.append(_missing(["body", "messages"]))
        elif not isinstance(messages, list):
            errors.append(
                {
                    "type": "list_type",
                    "loc": ["body", "messages"],
                    "msg": "Input should be a valid list",
                    "input": messages,
                }
            )
        else:
            for i, message in enumerate(messages):
                if not isinstance(message, dict):
                    errors.append(
                        {
                            "type": "model_attributes_type",
                            "loc": ["body", "messages", i],
                            "msg": "Input should be a valid dictionary or object to extract fields from",
                            "input": message,
                        }
                    )
                elif "role" not in message:
                    errors.append(
                        {**_missing(["body", "messages", i, "role"]), "input": message}
                    )
        for name in ("n", "max_tokens"):
            error = _int_field(body.get(name), ["body", name])
            if error is not None:
                errors.append(error)
        tools = body.get("tools")
        if isinstance(tools, list):
            for i, tool in enumerate(tools):
                if not isinstance(tool, dict) or not isinstance(
                    tool.get("function"), dict
                ):
                    errors.append(
                        {**_missing(["body", "tools", i, "function"]), "input": tool}
                    )
                elif "name" not in tool["function"]:
                    errors.append(
                        {
                            **_missing(["body", "tools", i, "function", "name"]),
                            "input": tool["function"],
                        }
                    )
        if errors:
            raise _Problem(422, {"detail": errors})

    def _automation_for_chat(self, user: _User) -> int:
        if not self.automation_feature_enabled:
            raise _detail(
                403,
                "Session automation is disabled. Please enable it in your Account settings to use Chat.",
            )
        if user.automation is None:
            now = self.clock()
            user.automation = {
                "is_enabled": True,
                "session_duration": 3600,
                "created_at": now,
                "updated_at": now,
            }
        if not user.automation["is_enabled"]:
            raise _detail(
                403,
                "Session automation is disabled. Please enable it in your Account settings to use Chat.",
            )
        return int(user.automation["session_duration"])

    async def _chat(self, request: Request) -> Any:
        key = self._api_key(request, check_active=True)
        body = self._object_body(await self._json_body(request))
        self._validate_chat(body)
        stream = bool(body.get("stream"))
        now = self.clock()
        user = self._users[key.user_id]
        session_id: str | None = None
        if not self.session_endpoints:
            # Today's gateway: a shared pool; session_id is accepted and ignored.
            model_id = self._resolve(body.get("model"))
            self._bill(user)
            failed = self._pool_fault(model_id, now, stream=stream)
            if failed is not None:
                return failed
        elif body.get("session_id"):
            session_id = str(body["session_id"])
            node = self._node.get(session_id)
            model_id = node.model_id if node else self._resolve(body.get("model"))
        else:
            resolved = self._resolve(body.get("model"))
            row = self._active_row(key)
            if row is not None and row.expires_at > now and row.model == resolved:
                session_id = row.session_id
            else:
                if row is not None and row.expires_at > now:
                    self._close_on_chain(row.session_id)
                duration = self._automation_for_chat(user)
                for r in self._rows:
                    if r.is_active and r.key_id == key.id:
                        r.is_active = False
                node = self._open_by_model(resolved, user, duration)
                self._rows.append(
                    _Row(
                        session_id=node.id,
                        key_id=key.id,
                        user_id=user.id,
                        model=resolved,
                        type="automated",
                        created_at=now,
                        expires_at=now + duration,
                    )
                )
                session_id = node.id
            model_id = resolved
        if session_id is not None:
            error = self._node_error(session_id, now)
            if error is not None:
                inner = json.dumps({"error": error}, separators=(",", ":"))
                message = f"HTTP 500: {inner}"
                if stream:
                    return self._sse_error(message)
                raise _Problem(
                    500, {"error": {"message": message, "type": "server_error"}}
                )
        self.inference_count += 1
        name = (
            self._models[model_id]["Name"]
            if model_id in self._models
            else str(model_id)
        )
        response = self._answer(body, name, stream=stream)
        if not self.session_endpoints:
            response.headers.update(self._rate_limit_headers())
        return response

    # -- today's gateway: billing, rate limits, pool faults ------------------------------

    def _balance_json(self, user: _User) -> dict[str, Any]:
        amount = user.credits
        return {
            "paid": {
                "posted_balance": _money(amount),
                "pending_holds": "0",
                "available": _money(amount),
            },
            "staking": {"daily_amount": "0", "refresh_date": None, "available": "0"},
            "total_available": _money(amount),
            "currency": "USD",
        }

    async def _balance(self, request: Request) -> Any:
        header = request.headers.get("authorization", "")
        if not header or header.removeprefix("Bearer ").strip().startswith("sk-"):
            # get_current_user takes API keys as well as Cognito JWTs.
            key = self._api_key(request, check_active=True)
            return self._balance_json(self._users[key.user_id])
        return self._balance_json(self._jwt_user(request))

    def _bill(self, user: _User) -> None:
        # The billing hold comes before routing, and its 402 is plain JSON
        # even when a stream was asked for.
        if user.credits <= 0:
            raise _Problem(
                402,
                {
                    "error": {
                        "message": "Insufficient credits",
                        "type": "insufficient_balance",
                        "available": _money(user.credits),
                        "estimated_cost": "0.0005",
                    }
                },
            )

    def _rate_limit_headers(self) -> dict[str, str]:
        used = self.inference_count
        return {
            "x-ratelimit-limit-requests": "600",
            "x-ratelimit-remaining-requests": str(max(0, 600 - used)),
            "x-ratelimit-limit-tokens": "1000000",
            "x-ratelimit-remaining-tokens": "1000000",
            "x-ratelimit-reset-requests": self._iso_tz(self.clock() + 60),
            "x-ratelimit-reset-tokens": self._iso_tz(self.clock() + 60),
        }

    def _pool_fault(
        self, model_id: str, now: float, *, stream: bool
    ) -> Response | None:
        fault = self._model_faults.get(model_id)
        if fault is None:
            return None
        if (fault.until is not None and now >= fault.until) or fault.times == 0:
            del self._model_faults[model_id]
            return None
        if fault.times is not None:
            fault.times -= 1
        if fault.kind == "session_expired":
            # Renewed and retried once, before the first byte: the client sees
            # an ordinary answer.
            self.pool_renewals += 1
            return None
        if fault.kind == "session_not_found":
            inner = json.dumps({"error": "session not found"}, separators=(",", ":"))
            message = f"HTTP 500: {inner}"
            if stream:
                return self._sse_error(message)
            raise _Problem(500, {"error": {"message": message, "type": "server_error"}})
        error = {
            "message": "provider closed connection",
            "type": "proxy_error",
            "status": 502,
        }
        if fault.kind == "proxy_error" and stream:
            return self._sse_event({"error": error})
        raise _Problem(502, {"error": error})

    def _sse_error(self, message: str) -> Response:
        return self._sse_event(
            {"error": {"message": message, "type": "server_error", "status": 500}}
        )

    def _sse_event(self, body: Mapping[str, Any]) -> Response:
        event = json.dumps(body)

        async def events() -> AsyncIterator[bytes]:
            yield f"data: {event}\n\n".encode()

        return StreamingResponse(
            events(), media_type="text/event-stream", headers=SSE_HEADERS
        )

    def _answer(self, body: Mapping[str, Any], model: str, *, stream: bool) -> Response:
        completion_id = f"chatcmpl-{self._next()}"
        created = int(self.clock())
        last = next(
            (m for m in reversed(body["messages"]) if m.get("role") == "user"),
            body["messages"][-1],
        )
        content = last.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict)
            )
        text = f"echo: {content or ''}"
        tools = body.get("tools") or []
        tool_choice = body.get("tool_choice")
        call = None
        if tools and tool_choice != "none":
            name = tools[0]["function"]["name"]
            if isinstance(tool_choice, dict):
                name = (tool_choice.get("function") or {}).get("name", name)
            call = {
                "id": f"call_{completion_id[9:]}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": json.dumps({"input": content or ""}),
                },
            }
        usage = {
            "prompt_tokens": len(str(content or "").split()),
            "completion_tokens": len(text.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not stream:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if call else text,
            }
            if call:
                message["tool_calls"] = [call]
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if call else "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        parts = [chunk({"role": "assistant", "content": ""})]
        if call:
            parts.append(chunk({"tool_calls": [{"index": 0, **call}]}))
            parts.append(chunk({}, "tool_calls"))
        else:
            words = text.split(" ")
            parts.extend(
                chunk({"content": w if i == 0 else f" {w}"})
                for i, w in enumerate(words)
            )
            parts.append(chunk({}, "stop"))
        parts.append(b"data: [DONE]\n\n")

        async def events() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        return StreamingResponse(
            events(), media_type="text/event-stream", headers=SSE_HEADERS
        )

    # -- automation ------------------------------------------------------------------------

    def _automation_json(self, user: _User) -> dict[str, Any]:
        assert user.automation is not None  # noqa: S101
        return {
            "is_enabled": user.automation["is_enabled"],
            "session_duration": user.automation["session_duration"],
            "user_id": user.id,
            "created_at": self._iso(user.automation["created_at"]),
            "updated_at": self._iso(user.automation["updated_at"]),
        }

    async def _automation(self, request: Request) -> Any:
        user = self._jwt_user(request)
        if not self.automation_feature_enabled:
            raise _detail(400, "Automation feature is currently disabled system-wide")
        now = self.clock()
        if request.method == "GET":
            if user.automation is None:
                # GET creates the row disabled; chat creates it enabled.
                user.automation = {
                    "is_enabled": False,
                    "session_duration": 3600,
                    "created_at": now,
                    "updated_at": now,
                }
            return self._automation_json(user)
        body = self._object_body(await self._json_body(request))
        enabled = body.get("is_enabled", True)
        duration = body.get("session_duration", 3600)
        if enabled is not None and not isinstance(enabled, bool):
            raise _Problem(
                422,
                {
                    "detail": [
                        {
                            "type": "bool_parsing",
                            "loc": ["body", "is_enabled"],
                            "msg": "Input should be a valid boolean",
                            "input": enabled,
                        }
                    ]
                },
            )
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int)
        ):
            raise _Problem(
                422,
                {
                    "detail": [
                        {
                            "type": "int_type",
                            "loc": ["body", "session_duration"],
                            "msg": "Input should be a valid integer",
                            "input": duration,
                        }
                    ]
                },
            )
        if duration is not None and duration < 60:  # noqa: PLR2004
            raise _detail(400, "Session duration must be at least 60 seconds")
        if duration is not None and duration > 86400:  # noqa: PLR2004
            raise _detail(
                400, "Session duration cannot exceed 86400 seconds (24 hours)"
            )
        if user.automation is None:
            user.automation = {
                "is_enabled": False,
                "session_duration": 3600,
                "created_at": now,
                "updated_at": now,
            }
        if enabled is not None:
            user.automation["is_enabled"] = enabled
        if duration is not None:
            user.automation["session_duration"] = duration
        user.automation["updated_at"] = now
        return self._automation_json(user)

    # -- auth routes -------------------------------------------------------------------------

    async def _register(self, request: Request) -> Any:
        if request.method == "DELETE":
            return self._delete_account(self._jwt_user(request))
        body = self._object_body(await self._json_body(request))
        errors = [_missing(["body", f]) for f in ("email", "password") if f not in body]
        password = body.get("password")
        if isinstance(password, str) and len(password) < 8:  # noqa: PLR2004
            errors.append(
                {
                    "type": "string_too_short",
                    "loc": ["body", "password"],
                    "msg": "String should have at least 8 characters",
                    "input": "***",
                    "ctx": {"min_length": 8},
                }
            )
        if errors:
            raise _Problem(422, {"detail": errors})
        email = str(body["email"])
        if any(u.email == email for u in self._users.values()):
            raise _detail(400, "User with this email already exists")
        user_id = self.add_user(email, str(password), name=body.get("name"))
        user = self._users[user_id]
        user.is_active = bool(body.get("is_active", True))
        return JSONResponse(
            {
                "email": user.email,
                "name": user.name,
                "is_active": user.is_active,
                "id": user.id,
            },
            status_code=201,
        )

    async def _login(self, request: Request) -> Any:
        body = self._object_body(await self._json_body(request))
        errors = [_missing(["body", f]) for f in ("email", "password") if f not in body]
        if errors:
            raise _Problem(422, {"detail": errors})
        user = next((u for u in self._users.values() if u.email == body["email"]), None)
        if user is None or not hmac.compare_digest(
            user.password, str(body["password"])
        ):
            raise _detail(
                401, "Incorrect email or password", {"WWW-Authenticate": "Bearer"}
            )
        return self._token_pair(user)

    def _token_pair(self, user: _User) -> dict[str, Any]:
        return {
            "access_token": self._jwt(user.id, "access", ACCESS_TTL),
            "refresh_token": self._jwt(user.id, "refresh", REFRESH_TTL),
            "token_type": "bearer",
        }

    async def _refresh(self, request: Request) -> Any:
        body = self._object_body(await self._json_body(request))
        if "refresh_token" not in body:
            raise _Problem(422, {"detail": [_missing(["body", "refresh_token"])]})
        user = self._verify_jwt(str(body["refresh_token"]), "refresh")
        return self._token_pair(user)

    async def _me(self, request: Request) -> Any:
        user = self._jwt_user(request)
        return {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "is_active": user.is_active,
        }

    def _key_json(self, key: _Key) -> dict[str, Any]:
        return {
            "id": key.id,
            "key_prefix": key.prefix,
            "name": key.name,
            "created_at": self._iso(key.created_at),
            "is_active": key.is_active,
            "is_default": key.is_default,
            "encrypted_key": None
            if key.legacy
            else "gAAAA" + hashlib.sha256(key.key.encode()).hexdigest()[:32],
            "encryption_version": 1,
        }

    async def _keys_route(self, request: Request) -> Any:
        user = self._jwt_user(request)
        if request.method == "GET":
            return [
                self._key_json(k) for k in self._keys.values() if k.user_id == user.id
            ]
        body = await self._json_body(request, required=True)
        body = self._object_body(body)
        key = self.add_api_key(user.id, default=False)
        created = next(k for k in self._keys.values() if k.key == key)
        created.name = None if body.get("name") is None else str(body["name"])
        return {"key": key, "key_prefix": created.prefix, "name": created.name}

    async def _delete_key(self, request: Request) -> Any:
        user = self._jwt_user(request)
        raw = request.path_params["key_id"]
        key_id = _int(raw, ["path", "key_id"])
        key = self._keys.get(key_id)
        if key is None or key.user_id != user.id:
            raise _detail(404, "API key not found")
        # Deactivating a key does not close its blockchain session.
        key.is_active = False
        return self._key_json(key)

    async def _private_key(self, request: Request) -> Any:
        user = self._jwt_user(request)
        now = self.clock()
        if request.method == "POST":
            body = self._object_body(await self._json_body(request))
            if "private_key" not in body:
                raise _Problem(422, {"detail": [_missing(["body", "private_key"])]})
            created = user.private_key_at[0] if user.private_key_at else now
            user.private_key = str(body["private_key"])
            user.private_key_at = (created, now)
            return JSONResponse(
                {"success": True, "message": "Private key stored successfully"},
                status_code=201,
            )
        if request.method == "DELETE":
            if user.private_key is None:
                raise _detail(404, "No private key found for user")
            user.private_key = None
            user.private_key_at = None
            return {"success": True, "message": "Private key deleted successfully"}
        return {
            "has_key": user.private_key is not None,
            "created_at": self._iso(user.private_key_at[0])
            if user.private_key_at
            else None,
            "updated_at": self._iso(user.private_key_at[1])
            if user.private_key_at
            else None,
        }

    async def _delegation(self, request: Request) -> Any:
        user = self._jwt_user(request)
        if request.method == "GET":
            skip = (
                self._int_query(request, "skip")
                if "skip" in request.query_params
                else 0
            )
            limit = (
                self._int_query(request, "limit")
                if "limit" in request.query_params
                else 100
            )
            mine = [d for d in self._delegations.values() if d["user_id"] == user.id]
            return mine[skip : skip + limit]
        body = self._object_body(await self._json_body(request))
        errors = [
            _missing(["body", f])
            for f in ("delegate_address", "signed_delegation_data")
            if f not in body
        ]
        if errors:
            raise _Problem(422, {"detail": errors})
        delegation_id = len(self._delegations) + 1
        record = {
            "delegate_address": str(body["delegate_address"]),
            "signed_delegation_data": str(body["signed_delegation_data"]),
            "expiry": body.get("expiry"),
            "is_active": bool(body.get("is_active", True)),
            "id": delegation_id,
            "user_id": user.id,
            # The one timestamptz column (server_default now()).
            "created_at": self._iso_tz(),
        }
        self._delegations[delegation_id] = record
        return record

    async def _active_delegation(self, request: Request) -> Any:
        user = self._jwt_user(request)
        active = [
            d
            for d in self._delegations.values()
            if d["user_id"] == user.id and d["is_active"]
        ]
        return active[-1] if active else None

    async def _delete_delegation(self, request: Request) -> Any:
        user = self._jwt_user(request)
        raw = request.path_params["delegation_id"]
        delegation_id = _int(raw, ["path", "delegation_id"])
        record = self._delegations.get(delegation_id)
        if record is None or record["user_id"] != user.id:
            raise _detail(404, "Delegation not found")
        del self._delegations[delegation_id]
        return Response(status_code=204)

    def _delete_account(self, user: _User) -> Any:
        keys = [k for k in self._keys.values() if k.user_id == user.id]
        rows = [r for r in self._rows if r.user_id == user.id]
        delegations = [d for d in self._delegations.values() if d["user_id"] == user.id]
        deleted = {
            "sessions": len(rows),
            "api_keys": len(keys),
            "private_key": user.private_key is not None,
            "automation_settings": user.automation is not None,
            "delegations": len(delegations),
        }
        # Sessions are deleted from the database only: on chain they run on.
        self._rows = [r for r in self._rows if r.user_id != user.id]
        for k in keys:
            del self._keys[k.id]
        for d in delegations:
            del self._delegations[d["id"]]
        del self._users[user.id]
        return {
            "message": "User account successfully deleted",
            "deleted_data": deleted,
            "cognito_deletion": {
                "success": False,
                "message": "Cognito is not used by this gateway",
            },
            "user_id": user.id,
            "deleted_at": self._iso(),
        }
