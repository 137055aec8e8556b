"""
A local emulator of Sipher's session API, for tests and demos.

It reproduces, in the order the real Express app runs them: the per-IP rate
limiter (which runs *before* authentication, so every caller is limited by IP),
shutdown 503s, API-key auth (``X-API-Key`` or ``Authorization: Bearer``) with the
free tier's 403 ``TIER_ACCESS_DENIED``, daily quotas counted on successful
responses only, the ``X-Session-Id`` middleware (which silently ignores an
unknown, expired, foreign or malformed id), the four session routes with their
zod-style validation errors, one ordinary route that honours session defaults
(``POST /v1/backends/compare``), and the catch-all 404.

Time comes from the injected clock and is read on each request, so a test moves
sessions into expiry with :class:`tether.testing.ManualClock`. Needs the
``emulator`` extra (Starlette).
"""

from __future__ import annotations

import json
import math
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tether.testing import FaultInjector
from tether_sipher._defaults import (
    ENUMS,
    SESSION_ID_PATTERN,
    VIEWING_KEY,
    VIEWING_KEY_PATTERN,
)


__all__ = [
    "DEFAULT_KEYS",
    "ENTERPRISE_KEY",
    "FREE_KEY",
    "PRO_KEY",
    "SipherEmulator",
]

#: A free-tier key the emulator accepts by default (no sessions for it).
FREE_KEY: Final = "sk_free_emulator_0000000000000000"
#: A pro-tier key the emulator accepts by default.
PRO_KEY: Final = "sk_pro_emulator_00000000000000000"
#: An enterprise key the emulator accepts by default.
ENTERPRISE_KEY: Final = "sk_ent_emulator_00000000000000000"

#: Keys the emulator accepts unless told otherwise: key -> tier.
DEFAULT_KEYS: Final[Mapping[str, str]] = {
    FREE_KEY: "free",
    PRO_KEY: "pro",
    ENTERPRISE_KEY: "enterprise",
}

#: ``DAILY_QUOTAS``: tier -> (total per day, per category per day).
DAILY_QUOTAS: Final[Mapping[str, tuple[int, int]]] = {
    "free": (100, 50),
    "pro": (10_000, 2_000),
    "enterprise": (100_000, 20_000),
}

_NO_AUTH: Final = frozenset(
    {"/", "/skill.md", "/v1/health", "/v1/ready", "/v1/errors", "/v1/openapi.json"}
)
_SESSION_TIERS: Final = frozenset({"pro", "enterprise"})
_MIN_TTL: Final = 60
_MAX_TTL: Final = 86_400
_DEFAULT_TTL: Final = 3_600
_COMPARE_OPERATIONS: Final = (
    "stealth_privacy",
    "encrypted_compute",
    "compliance_audit",
)
_PRIORITIES: Final = ("cost", "speed", "privacy")


class _Reply(Exception):  # noqa: N818 -- internal control flow
    """
    Raised inside the emulator to answer at once.
    """

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def _error(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> _Reply:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return _Reply(
        JSONResponse(
            {"success": False, "error": error},
            status_code=status,
            headers=dict(headers or {}),
        )
    )


def _issue(
    path: list[str | int], code: str, message: str, **extra: Any
) -> dict[str, Any]:
    return {"code": code, "path": path, "message": message, **extra}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _validate_defaults(
    raw: Any, path: list[str | int]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """
    zod's ``SessionDefaults``: every field optional, unknown keys stripped.
    """
    if raw is None or not isinstance(raw, dict):
        received = "undefined" if raw is None else _type_name(raw)
        return {}, [
            _issue(
                path,
                "invalid_type",
                f"Invalid input: expected object, received {received}",
                expected="object",
            )
        ]
    result: dict[str, str] = {}
    issues: list[dict[str, Any]] = []
    for name, allowed in ENUMS.items():
        if name not in raw:
            continue
        value = raw[name]
        if value not in allowed:
            options = "|".join(f'"{v}"' for v in allowed)
            issues.append(
                _issue(
                    [*path, name],
                    "invalid_value",
                    f"Invalid option: expected one of {options}",
                    values=list(allowed),
                )
            )
        else:
            result[name] = value
    if VIEWING_KEY in raw:
        value = raw[VIEWING_KEY]
        if not isinstance(value, str):
            issues.append(
                _issue(
                    [*path, VIEWING_KEY],
                    "invalid_type",
                    f"Invalid input: expected string, received {_type_name(value)}",
                    expected="string",
                )
            )
        elif not VIEWING_KEY_PATTERN.match(value):
            issues.append(
                _issue(
                    [*path, VIEWING_KEY],
                    "invalid_format",
                    "Invalid string: must match pattern /^0x[0-9a-fA-F]+$/",
                    origin="string",
                    format="regex",
                    pattern="/^0x[0-9a-fA-F]+$/",
                )
            )
        else:
            result[VIEWING_KEY] = value
    return result, issues


@attrs.define
class _StoredSession:
    id: str
    owner: str
    defaults: dict[str, str]
    created_at: int
    expires_at: int
    last_accessed_at: int
    #: When the in-process LRU drops the entry (epoch ms): each write stores it
    #: with a TTL of the remaining seconds *rounded*, so up to half a second
    #: before ``expires_at``.
    forget_at: int = 0

    def persist(self, now: int) -> None:
        # persistSession: Math.max(1, Math.round((expiresAt - now) / 1000)) s.
        ttl = max(1, math.floor((self.expires_at - now) / 1000 + 0.5))
        self.forget_at = now + ttl * 1000

    def gone(self, now: int) -> bool:
        return now >= self.expires_at or now > self.forget_at


@attrs.define
class _Window:
    start: int
    count: int = 0


@attrs.define(eq=False)
class SipherEmulator:
    """
    An in-process Sipher with the session API, over ASGI.

    Args:
        clock: Seconds since the epoch; pass ``ManualClock().time`` in tests.
        api_keys: Accepted keys and their tiers (``free``, ``pro``,
            ``enterprise``).
        rate_limit: Requests per client IP per window (``RATE_LIMIT_MAX``).
        rate_window: The window in seconds (``RATE_LIMIT_WINDOW_MS`` / 1000).
        daily_quotas: Tier -> (total, per category) successful requests per day.
        max_sessions: Capacity of the in-process LRU store; the least recently
            used session is evicted beyond it (and then answers 404).

    Attributes:
        app: The ASGI app, wrapped in :class:`~tether.testing.FaultInjector`.
        faults: That injector; set ``rate``, ``kinds`` and ``seed`` on it.
        effective_bodies: The JSON body of every ``POST /v1/backends/compare``
            after the ``X-Session-Id`` middleware ran, oldest first: tests read
            it to see whether session defaults were applied.
        quota_backend_down: When true, metered routes answer 503
            ``SERVICE_UNAVAILABLE`` (the quota check fails closed).
        shutting_down: When true, every path except health and ready answers 503.
    """

    clock: Callable[[], float] = time.time
    api_keys: Mapping[str, str] = attrs.field(factory=lambda: dict(DEFAULT_KEYS))
    rate_limit: int = 100
    rate_window: float = 60.0
    daily_quotas: Mapping[str, tuple[int, int]] = attrs.field(
        factory=lambda: dict(DAILY_QUOTAS)
    )
    max_sessions: int = 10_000
    quota_backend_down: bool = False
    shutting_down: bool = False
    effective_bodies: list[dict[str, Any]] = attrs.field(factory=list)
    _sessions: OrderedDict[str, _StoredSession] = attrs.field(
        init=False, factory=OrderedDict
    )
    _windows: dict[str, _Window] = attrs.field(init=False, factory=dict)
    _usage: dict[tuple[str, str, str], int] = attrs.field(init=False, factory=dict)
    _injected: list[tuple[int, str, str]] = attrs.field(init=False, factory=list)
    app: FaultInjector = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        starlette = Starlette(
            routes=[Route("/{path:path}", self._dispatch, methods=methods)]
        )
        self.app = FaultInjector(starlette)

    @property
    def faults(self) -> FaultInjector:
        """
        The fault injector in front of the emulator.
        """
        return self.app

    # -- control methods for tests --------------------------------------------

    def live_sessions(self) -> set[str]:
        """
        Ids of the sessions the emulator holds and that have not expired.
        """
        now = self._now_ms()
        return {s.id for s in self._sessions.values() if not s.gone(now)}

    def session_defaults(self, session_id: str) -> dict[str, str] | None:
        """
        A session's stored defaults (including any viewing key), or ``None``.
        """
        stored = self._sessions.get(session_id)
        return dict(stored.defaults) if stored else None

    def kill(self, session_id: str) -> None:
        """
        Drop one session server-side (as an LRU eviction would).
        """
        self._sessions.pop(session_id, None)

    def restart(self) -> None:
        """
        Lose every session, as a restart without Redis does.
        """
        self._sessions.clear()

    def inject_error(
        self, status: int, code: str, message: str, *, count: int = 1
    ) -> None:
        """
        Answer the next *count* authenticated requests with this error envelope.
        """
        self._injected.extend([(status, code, message)] * count)

    # -- plumbing ---------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _dispatch(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        extra_headers: dict[str, str] = {}
        try:
            response = await self._handle(request, extra_headers)
        except _Reply as reply:
            response = reply.response
        for name, value in extra_headers.items():
            response.headers.setdefault(name, value)
        response.headers["X-Request-ID"] = request_id
        return response

    def _rate_limit(self, request: Request, headers: dict[str, str]) -> None:
        # express-rate-limit, fixed window, keyed by client IP: the limiter runs
        # before authentication, so the per-tier limits never apply.
        # Times are whole milliseconds (Date.now()), and the seconds left are
        # rounded up from them, as express-rate-limit does: float seconds would
        # round 59 s and a hair up to 60.
        ip = request.client.host if request.client else "unknown"
        now = self._now_ms()
        window_ms = round(self.rate_window * 1000)
        window = self._windows.get(ip)
        if window is None or now >= window.start + window_ms:
            window = _Window(start=now)
            self._windows[ip] = window
        window.count += 1
        reset = max(0, -((now - window.start - window_ms) // 1000))
        headers["RateLimit-Policy"] = f"{self.rate_limit};w={int(self.rate_window)}"
        headers["RateLimit-Limit"] = str(self.rate_limit)
        headers["RateLimit-Remaining"] = str(max(0, self.rate_limit - window.count))
        headers["RateLimit-Reset"] = str(reset)
        if window.count > self.rate_limit:
            raise _error(
                429,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests, please try again later",
                {"retryAfter": math.ceil(self.rate_window), "limit": self.rate_limit},
                headers={**headers, "Retry-After": str(reset)},
            )

    def _authenticate(self, request: Request) -> tuple[str, str]:
        key = request.headers.get("x-api-key")
        if not key:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                key = token.strip()
        if not key:
            raise _error(
                401,
                "UNAUTHORIZED",
                "API key required. Provide via X-API-Key header or "
                "Authorization: Bearer <key>",
            )
        tier = self.api_keys.get(key)
        if tier is None:
            raise _error(401, "INVALID_API_KEY", "Invalid API key")
        return key, tier

    def _category(self, path: str) -> str:
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[1] == "sessions":  # noqa: PLR2004
            return "session"
        return parts[1] if len(parts) >= 2 else "other"  # noqa: PLR2004

    def _day(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")

    def _check_quota(self, key: str, tier: str, category: str) -> None:
        if self.quota_backend_down:
            raise _error(
                503,
                "SERVICE_UNAVAILABLE",
                "Usage quota service temporarily unavailable. Please retry.",
            )
        total_limit, category_limit = self.daily_quotas[tier]
        day = self._day()
        total = sum(v for (k, d, _), v in self._usage.items() if k == key and d == day)
        current = self._usage.get((key, day, category), 0)
        # checkQuota reports the total when the total is spent, else the category.
        if total >= total_limit:
            used, limit = total, total_limit
        elif current >= category_limit:
            used, limit = current, category_limit
        else:
            return
        now = datetime.fromtimestamp(self.clock(), UTC)
        midnight = (now + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        # JavaScript's Date.toISOString(): milliseconds, and Z.
        reset_at = midnight.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        raise _error(
            429,
            "DAILY_QUOTA_EXCEEDED",
            f"Daily quota exceeded. Used {used}/{limit} operations. "
            f"Resets at {reset_at}.",
            {
                "category": category,
                "current": used,
                "limit": limit,
                "resetAt": reset_at,
                "tier": tier,
            },
        )

    def _count(self, key: str, category: str) -> None:
        slot = (key, self._day(), category)
        self._usage[slot] = self._usage.get(slot, 0) + 1

    async def _json_body(self, request: Request) -> Any:
        # express.json({limit: '1mb'}) parses only a JSON content type; any
        # other leaves the body undefined (then refused by validation).
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not (
            media.startswith("application/") and media.endswith("+json")
        ):
            return None
        raw = await request.body()
        if not raw:
            return None
        if len(raw) > 1024 * 1024:
            # body-parser's 413 error reaches the error handler, which answers
            # every error it does not know with 500.
            raise _error(500, "INTERNAL_SERVER_ERROR", "An unexpected error occurred")
        try:
            return json.loads(raw)
        except ValueError:
            raise _error(
                400, "INVALID_JSON", "Request body is not valid JSON"
            ) from None

    def _lookup(self, session_id: str, owner: str) -> _StoredSession | None:
        stored = self._sessions.get(session_id)
        if stored is None:
            return None
        now = self._now_ms()
        if stored.gone(now):
            del self._sessions[session_id]
            return None
        # getSession writes the session back (lastAccessedAt) before the
        # ownership check, storing it with a freshly rounded TTL.
        stored.persist(now)
        if stored.owner != owner:
            return None
        self._sessions.move_to_end(session_id)
        return stored

    async def _handle(self, request: Request, headers: dict[str, str]) -> Response:
        method = request.method
        path = request.url.path
        self._rate_limit(request, headers)
        if self.shutting_down and path not in {"/v1/health", "/v1/ready"}:
            raise _error(503, "SERVICE_UNAVAILABLE", "Server is shutting down")
        if path == "/v1/health" and method == "GET":
            return self._health()
        key, tier = self._authenticate(request)
        if path.startswith("/v1/sessions") and tier not in _SESSION_TIERS:
            raise _error(
                403,
                "TIER_ACCESS_DENIED",
                f"Endpoint {path} not available on free tier. "
                "Upgrade to pro or enterprise.",
            )
        category = self._category(path)
        self._check_quota(key, tier, category)
        if self._injected:
            status, code, message = self._injected.pop(0)
            raise _error(status, code, message)
        body = (
            await self._json_body(request)
            if method in {"POST", "PATCH", "PUT"}
            else None
        )
        body = self._apply_session(request, key, body)
        response = self._route(method, path, key, body)
        if response.status_code < 400:  # noqa: PLR2004
            self._count(key, category)
        return response

    def _apply_session(self, request: Request, owner: str, body: Any) -> Any:
        # The X-Session-Id middleware: copy each default whose key the body lacks;
        # any problem with the id and the header is silently ignored.
        session_id = request.headers.get("x-session-id")
        if not session_id or not SESSION_ID_PATTERN.match(session_id):
            return body
        stored = self._lookup(session_id, owner)
        if stored is None:
            return body
        stored.last_accessed_at = self._now_ms()
        if body is None:
            body = {}
        if isinstance(body, dict):
            for name, value in stored.defaults.items():
                body.setdefault(name, value)
        return body

    def _route(self, method: str, path: str, key: str, body: Any) -> Response:
        if path == "/v1/sessions" and method == "POST":
            return self._create(key, body)
        if path.startswith("/v1/sessions/") and path.count("/") == 3:  # noqa: PLR2004
            session_id = path.rsplit("/", 1)[1]
            if method == "GET":
                return self._get(key, session_id)
            if method == "PATCH":
                return self._update(key, session_id, body)
            if method == "DELETE":
                return self._delete(key, session_id)
        if path == "/v1/backends/compare" and method == "POST":
            return self._compare(body)
        raise _error(404, "NOT_FOUND", f"Route {method} {path} not found")

    # -- routes -----------------------------------------------------------------

    def _health(self) -> Response:
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "status": "shutting_down" if self.shutting_down else "healthy",
                    "version": "0.1.0",
                    "timestamp": datetime.fromtimestamp(self.clock(), UTC)
                    .isoformat()
                    .replace("+00:00", "Z"),
                },
            },
            status_code=503 if self.shutting_down else 200,
        )

    def _check_id(self, session_id: str) -> None:
        if not SESSION_ID_PATTERN.match(session_id):
            raise _error(
                400,
                "VALIDATION_ERROR",
                "Invalid session ID format. Expected sess_ + 64 hex chars.",
            )

    def _not_found(self, session_id: str) -> _Reply:
        return _error(404, "SESSION_NOT_FOUND", f"Session not found: {session_id}")

    def _create(self, owner: str, body: Any) -> Response:
        issues: list[dict[str, Any]] = []
        defaults: dict[str, str] = {}
        ttl = _DEFAULT_TTL
        if not isinstance(body, dict):
            issues.append(
                _issue(
                    [],
                    "invalid_type",
                    f"Invalid input: expected object, received {_type_name(body) if body is not None else 'undefined'}",
                    expected="object",
                )
            )
        else:
            defaults, issues = _validate_defaults(body.get("defaults"), ["defaults"])
            if "ttlSeconds" in body:
                raw_ttl = body["ttlSeconds"]
                if isinstance(raw_ttl, bool) or not isinstance(raw_ttl, int | float):
                    issues.append(
                        _issue(
                            ["ttlSeconds"],
                            "invalid_type",
                            f"Invalid input: expected number, received {_type_name(raw_ttl)}",
                            expected="number",
                        )
                    )
                elif raw_ttl != int(raw_ttl):
                    issues.append(
                        _issue(
                            ["ttlSeconds"],
                            "invalid_type",
                            "Invalid input: expected int, received number",
                            expected="int",
                            format="safeint",
                        )
                    )
                elif raw_ttl < _MIN_TTL:
                    issues.append(
                        _issue(
                            ["ttlSeconds"],
                            "too_small",
                            f"Too small: expected number to be >={_MIN_TTL}",
                            origin="number",
                            minimum=_MIN_TTL,
                            inclusive=True,
                        )
                    )
                elif raw_ttl > _MAX_TTL:
                    issues.append(
                        _issue(
                            ["ttlSeconds"],
                            "too_big",
                            f"Too big: expected number to be <={_MAX_TTL}",
                            origin="number",
                            maximum=_MAX_TTL,
                            inclusive=True,
                        )
                    )
                else:
                    ttl = int(raw_ttl)
        if issues:
            raise _error(400, "VALIDATION_ERROR", "Invalid request data", issues)
        now = self._now_ms()
        stored = _StoredSession(
            id="sess_" + secrets.token_hex(32),
            owner=owner,
            defaults=defaults,
            created_at=now,
            expires_at=now + ttl * 1000,
            last_accessed_at=now,
        )
        stored.persist(now)
        self._sessions[stored.id] = stored
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "sessionId": stored.id,
                    "defaults": dict(stored.defaults),
                    "createdAt": stored.created_at,
                    "expiresAt": stored.expires_at,
                },
            },
            status_code=201,
        )

    def _get(self, owner: str, session_id: str) -> Response:
        self._check_id(session_id)
        stored = self._lookup(session_id, owner)
        if stored is None:
            raise self._not_found(session_id)
        stored.last_accessed_at = self._now_ms()
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "sessionId": stored.id,
                    "defaults": dict(stored.defaults),
                    "createdAt": stored.created_at,
                    "expiresAt": stored.expires_at,
                    "lastAccessedAt": stored.last_accessed_at,
                },
            }
        )

    def _update(self, owner: str, session_id: str, body: Any) -> Response:
        # validateRequest runs before the handler checks the id: body first.
        if not isinstance(body, dict):
            issues = [
                _issue(
                    [],
                    "invalid_type",
                    f"Invalid input: expected object, received {_type_name(body) if body is not None else 'undefined'}",
                    expected="object",
                )
            ]
            raise _error(400, "VALIDATION_ERROR", "Invalid request data", issues)
        # ttlSeconds (and any other top-level key) is stripped by zod: ignored.
        defaults, issues = _validate_defaults(body.get("defaults"), ["defaults"])
        if issues:
            raise _error(400, "VALIDATION_ERROR", "Invalid request data", issues)
        self._check_id(session_id)
        stored = self._lookup(session_id, owner)
        if stored is None:
            raise self._not_found(session_id)
        stored.defaults.update(defaults)
        stored.last_accessed_at = self._now_ms()
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "sessionId": stored.id,
                    "defaults": dict(stored.defaults),
                    "expiresAt": stored.expires_at,
                    "lastAccessedAt": stored.last_accessed_at,
                },
            }
        )

    def _delete(self, owner: str, session_id: str) -> Response:
        self._check_id(session_id)
        stored = self._lookup(session_id, owner)
        if stored is None:
            raise self._not_found(session_id)
        del self._sessions[session_id]
        return JSONResponse(
            {"success": True, "data": {"sessionId": session_id, "deleted": True}}
        )

    def _compare(self, body: Any) -> Response:
        if not isinstance(body, dict):
            body = {}
        self.effective_bodies.append(dict(body))
        issues: list[dict[str, Any]] = []
        operation = body.get("operation")
        if operation not in _COMPARE_OPERATIONS:
            options = "|".join(f'"{v}"' for v in _COMPARE_OPERATIONS)
            issues.append(
                _issue(
                    ["operation"],
                    "invalid_value",
                    f"Invalid option: expected one of {options}",
                    values=list(_COMPARE_OPERATIONS),
                )
            )
        chain = body.get("chain", "solana")
        if not isinstance(chain, str):
            issues.append(
                _issue(
                    ["chain"],
                    "invalid_type",
                    f"Invalid input: expected string, received {_type_name(chain)}",
                    expected="string",
                )
            )
        prioritize = body.get("prioritize")
        if prioritize is not None and prioritize not in _PRIORITIES:
            issues.append(
                _issue(
                    ["prioritize"],
                    "invalid_value",
                    'Invalid option: expected one of "cost"|"speed"|"privacy"',
                    values=list(_PRIORITIES),
                )
            )
        if issues:
            raise _error(400, "VALIDATION_ERROR", "Invalid request data", issues)
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "operation": operation,
                    "chain": chain,
                    "comparisons": [
                        {
                            "backend": "sip-native",
                            "type": "transaction",
                            "available": True,
                            "costLamports": 5000,
                            "costSOL": "0.000005",
                            "latencyMs": 400,
                            "latencyCategory": "fast",
                            "privacyLevel": "high",
                            "capabilities": [
                                "stealth_addresses",
                                "pedersen_commitments",
                            ],
                            "score": 88,
                            "recommended": True,
                        }
                    ],
                    "recommendation": {
                        "best_overall": "sip-native",
                        "best_value": "sip-native",
                        "fastest": "sip-native",
                        "most_private": "sip-native",
                        "reasoning": "sip-native is the only available backend",
                    },
                },
            }
        )
