# Copyright 2026 The tether developers. MIT license.
"""
A local emulator of Edgegap's relay session API, for tests and demos.

It reproduces the documented behaviour (``/work/shared/reference/relay.md``
and the Swagger 2.0 file copied into this distribution's tests): the routes,
``Authorization: token <TOKEN>``, ``{"message": ...}`` error bodies, sessions
that become ready only after a delay (or fail with an ``error``), unsigned
32-bit tokens above 2**31, a paginated list and ``DELETE`` answering 204.

Time comes from the injected ``clock`` and is read on each request; nothing
runs in the background. Requires the ``emulator`` extra (Starlette).
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
import time
from typing import TYPE_CHECKING, Any

import attrs
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tether.testing import FaultInjector


if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from starlette.requests import Request


__all__ = ["RelayEmulator"]

_FILTER_TYPES = ("any", "all", "not")
_TOKEN_LOW = 2**31 + 1
_TOKEN_HIGH = 2**32 - 1

#: What Edgegap's tooling says a failed session means.
PRIVATE_IP_ERROR = (
    "Could not find a relay for the users: every user IP must be a public address"
)


@attrs.define
class _User:
    ip: str
    token: int
    latitude: float
    longitude: float


@attrs.define
class _Relay:
    id: str
    created_at: float
    users: list[_User]
    session_token: int
    host_ip: str
    server_port: int
    client_port: int
    filters: list[dict[str, Any]] | None = None
    webhook_url: str | None = None
    #: The error the session reaches when its delay is over (None: ready).
    pending_error: str | None = None
    #: An error forced by a test, at once.
    forced_error: str | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class RelayEmulator:
    """
    Edgegap's relay session API, in memory.

    Args:
        clock: Seconds since the epoch (``ManualClock().time`` in tests).
        tokens: Relay-profile API tokens the emulator accepts.
        standard_tokens: Standard (non-relay) API tokens: known to Edgegap but
            refused by the relay API with 403.
        ready_delay: Seconds (on *clock*) before a new session is ready.
        fail_with: When set, new sessions end in this ``error`` instead of
            becoming ready (after *ready_delay*).
        page_size: Sessions per page of the list.
        revoke_status: 200 (the session) or 204 (no content) on revoke; the
            spec allows both.
        seed: Seeds ids and tokens, for reproducible runs.

    Attributes:
        app: The ASGI app, wrapped in :class:`tether.testing.FaultInjector`.
        faults: That injector (set ``rate``, ``kinds``, ``seed``).
        received: Every request body, as ``(method, path, json)``.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        tokens: Collection[str] = ("relay-token",),
        standard_tokens: Collection[str] = ("standard-token",),
        ready_delay: float = 2.0,
        fail_with: str | None = None,
        page_size: int = 10,
        revoke_status: int = 200,
        seed: int = 0,
    ) -> None:
        if revoke_status not in (200, 204):
            msg = "revoke_status must be 200 or 204"
            raise ValueError(msg)
        self.clock = clock
        self.tokens = frozenset(tokens)
        self.standard_tokens = frozenset(standard_tokens)
        self.ready_delay = ready_delay
        self.fail_with = fail_with
        self.page_size = page_size
        self.revoke_status = revoke_status
        self.received: list[tuple[str, str, Any]] = []
        self._random = random.Random(seed)  # noqa: S311 -- ids, not security
        self._sessions: dict[str, _Relay] = {}
        self._deleted: set[str] = set()
        routes = [
            Route("/v1/relays/sessions", self._list, methods=["GET"]),
            Route("/v1/relays/sessions", self._create, methods=["POST"]),
            Route(
                "/v1/relays/sessions:authorize-user", self._authorize, methods=["POST"]
            ),
            Route("/v1/relays/sessions:revoke-user", self._revoke, methods=["POST"]),
            Route("/v1/relays/sessions/{session_id}", self._get, methods=["GET"]),
            Route("/v1/relays/sessions/{session_id}", self._delete, methods=["DELETE"]),
        ]
        self.faults = FaultInjector(Starlette(routes=routes))
        self.app = self.faults

    # -- control methods for tests ----------------------------------------------

    def live_sessions(self) -> list[str]:
        """
        Ids of the sessions that exist (billing), ready or not.
        """
        return list(self._sessions)

    def deleted_sessions(self) -> list[str]:
        """
        Ids of the sessions deleted through the API or :meth:`kill`.
        """
        return sorted(self._deleted)

    def kill(self, session_id: str) -> None:
        """
        Delete a session server-side (as if from the dashboard).
        """
        self._sessions.pop(session_id)
        self._deleted.add(session_id)

    def fail(self, session_id: str, error: str = "Relay failed") -> None:
        """
        Make a session report *error* from now on.
        """
        self._sessions[session_id].forced_error = error

    def recover(self, session_id: str) -> None:
        """
        Undo :meth:`fail`.
        """
        self._sessions[session_id].forced_error = None

    def view(self, session_id: str) -> dict[str, Any]:
        """
        The session as ``GET`` would show it now.
        """
        return self._render(self._sessions[session_id])

    def user_token(self, session_id: str, ip: str) -> int | None:
        """
        The token of the user at *ip*, if authorized.
        """
        for user in self._sessions[session_id].users:
            if user.ip == ip:
                return user.token
        return None

    # -- helpers ---------------------------------------------------------------

    def _token(self) -> int:
        return self._random.randint(_TOKEN_LOW, _TOKEN_HIGH)

    def _user(self, ip: str) -> _User:
        return _User(
            ip=ip,
            token=self._token(),
            latitude=round(self._random.uniform(-60, 60), 4),
            longitude=round(self._random.uniform(-150, 150), 4),
        )

    def _state(self, relay: _Relay) -> str:
        if relay.forced_error is not None:
            return "error"
        if self.clock() < relay.created_at + self.ready_delay:
            return "initializing"
        if relay.pending_error is not None:
            return "error"
        return "ready"

    def _render(self, relay: _Relay) -> dict[str, Any]:
        # Fields without a value are left out: the spec declares none of them
        # nullable, and the service's answers validate against it.
        state = self._state(relay)
        body: dict[str, Any] = {
            "session_id": relay.id,
            "status": "Initializing",
            "ready": False,
            "linked": False,
            "session_users": [],
        }
        if relay.webhook_url is not None:
            body["webhook_url"] = relay.webhook_url
        if state == "error":
            body["status"] = "Error"
            body["error"] = relay.forced_error or relay.pending_error
        elif state == "ready":
            host = f"{relay.id.removesuffix('-S')}.st.edgegap.net"
            body.update(
                authorization_token=relay.session_token,
                status="Linked",
                ready=True,
                linked=True,
                session_users=[self._render_user(u) for u in relay.users],
                relay={
                    "ip": relay.host_ip,
                    "host": host,
                    "ports": {
                        "server": {
                            "port": relay.server_port,
                            "protocol": "UDP",
                            "link": f"{host}:{relay.server_port}",
                        },
                        "client": {
                            "port": relay.client_port,
                            "protocol": "UDP",
                            "link": f"{host}:{relay.client_port}",
                        },
                    },
                },
            )
        return body

    @staticmethod
    def _render_user(user: _User) -> dict[str, Any]:
        return {
            "ip_address": user.ip,
            "latitude": user.latitude,
            "longitude": user.longitude,
            "authorization_token": user.token,
        }

    def _auth(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "token" or not value:
            return _error(401, "Unauthorized: use 'Authorization: token <TOKEN>'")
        if value in self.standard_tokens:
            return _error(
                403,
                "Forbidden: the relay API needs a token of the relay profile",
            )
        if value not in self.tokens:
            return _error(401, "Unauthorized: invalid token")
        return None

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = ...
        self.received.append((request.method, request.url.path, body))
        return body

    @staticmethod
    def _ip(value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return None

    # -- routes ------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        body = await self._body(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object")
        # Other top-level fields are ignored: the payload's schema allows them.
        users = body.get("users")
        if not isinstance(users, list) or not users:
            return _error(400, "users: at least one user is required")
        ips: list[str] = []
        for user in users:
            if not isinstance(user, dict) or set(user) != {"ip"}:
                return _error(400, 'users: each user must be {"ip": <address>}')
            ip = self._ip(user["ip"])
            if ip is None:
                return _error(400, f"users: invalid IP address {user['ip']!r}")
            ips.append(ip)
        filters = body.get("filters")
        if filters is not None:
            if not isinstance(filters, list):
                return _error(400, "filters must be a list")
            for item in filters:
                if (
                    not isinstance(item, dict)
                    or not isinstance(item.get("field"), str)
                    or not isinstance(item.get("values"), list)
                    or not all(isinstance(v, str) for v in item["values"])
                    or item.get("filter_type") not in _FILTER_TYPES
                ):
                    return _error(
                        400,
                        "filters: each filter needs field, values and a "
                        "filter_type of any, all or not",
                    )
        webhook_url = body.get("webhook_url")
        if webhook_url is not None and not isinstance(webhook_url, str):
            return _error(400, "webhook_url must be a string")
        rnd = self._random
        session_id = f"{rnd.getrandbits(48):012x}-S"
        private = any(not ipaddress.ip_address(ip).is_global for ip in ips)
        relay = _Relay(
            id=session_id,
            created_at=self.clock(),
            users=[self._user(ip) for ip in ips],
            session_token=self._token(),
            host_ip=f"178.79.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}",
            server_port=self._random.randint(30000, 32000),
            client_port=self._random.randint(32001, 34000),
            filters=filters,
            webhook_url=webhook_url,
            pending_error=self.fail_with or (PRIVATE_IP_ERROR if private else None),
        )
        self._sessions[session_id] = relay
        return JSONResponse(self._render(relay))

    async def _get(self, request: Request) -> Response:
        await self._body(request)
        if (denied := self._auth(request)) is not None:
            return denied
        relay = self._sessions.get(request.path_params["session_id"])
        if relay is None:
            return _error(404, "Relay session not found")
        return JSONResponse(self._render(relay))

    async def _delete(self, request: Request) -> Response:
        await self._body(request)
        if (denied := self._auth(request)) is not None:
            return denied
        session_id = request.path_params["session_id"]
        if self._sessions.pop(session_id, None) is None:
            return _error(404, "Relay session not found")
        self._deleted.add(session_id)
        return Response(status_code=204)

    async def _list(self, request: Request) -> Response:
        await self._body(request)
        if (denied := self._auth(request)) is not None:
            return denied
        # The spec declares no page parameter and no 400 on this path: a page
        # that is not a whole number >= 1 is the first.
        raw_page = request.query_params.get("page", "1")
        try:
            page = max(1, int(raw_page))
        except ValueError:
            page = 1
        every = list(self._sessions.values())
        num_pages = max(1, math.ceil(len(every) / self.page_size))
        chunk = every[(page - 1) * self.page_size : page * self.page_size]
        has_next = page < num_pages
        has_previous = page > 1
        pagination: dict[str, Any] = {
            "number": page,
            "paginator": {"num_pages": num_pages},
            "has_next": has_next,
            "has_previous": has_previous,
        }
        # Page numbers that do not exist are left out, not null.
        if has_next:
            pagination["next_page_number"] = page + 1
        if has_previous:
            pagination["previous_page_number"] = page - 1
        return JSONResponse(
            {
                "sessions": [self._render(r) for r in chunk],
                "total_count": len(every),
                "pagination": pagination,
            }
        )

    async def _authorize(self, request: Request) -> Response:
        body = await self._body(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object")
        session_id = body.get("session_id")
        if not isinstance(session_id, str) or "user_ip" not in body:
            return _error(400, "session_id and user_ip are required")
        ip = self._ip(body["user_ip"])
        if ip is None:
            return _error(400, f"user_ip: invalid IP address {body['user_ip']!r}")
        relay = self._sessions.get(session_id)
        # The spec documents no 404 on this path: an unknown session is a 400.
        if relay is None:
            return _error(400, f"Relay session {session_id} not found")
        if self._state(relay) != "ready":
            return _error(400, f"Relay session {session_id} is not ready")
        if any(u.ip == ip for u in relay.users):
            return _error(409, f"User {ip} is already authorized on this session")
        user = self._user(ip)
        relay.users.append(user)
        response = self._render(relay)
        del response["session_users"]
        response["session_user"] = self._render_user(user)
        return JSONResponse(response)

    async def _revoke(self, request: Request) -> Response:
        body = await self._body(request)
        if (denied := self._auth(request)) is not None:
            return denied
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object")
        session_id = body.get("session_id")
        token = body.get("authorization_token")
        if (
            not isinstance(session_id, str)
            or not isinstance(token, int)
            or isinstance(token, bool)
        ):
            return _error(
                400,
                "session_id (string) and authorization_token (integer) are required",
            )
        relay = self._sessions.get(session_id)
        if relay is None:
            return _error(404, "Relay session not found")
        for user in relay.users:
            if user.token == token:
                relay.users.remove(user)
                break
        else:
            return _error(404, "No user with this authorization token on the session")
        if self.revoke_status == 204:  # noqa: PLR2004
            return Response(status_code=204)
        return JSONResponse(self._render(relay))
