"""
The Sipher provider: agent sessions of the SIP Protocol's Sipher API.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import attrs
import httpx

# The core's redaction helpers are not public yet; they are what ProviderError
# itself uses, so error bodies are masked the same way.
from tether import Health, HealthStatus, Secret, Session, redact, redact_text
from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    Operation,
    Provider,
    RemoteSession,
    get_logger,
)
from tether.exceptions import (
    InvalidParameterError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    SessionEndedError,
    SessionExpiredError,
    SessionLostError,
)
from tether_sipher._config import SipherConfig
from tether_sipher._defaults import SESSION_ID_PATTERN, VIEWING_KEY, normalise_defaults
from tether_sipher._handle import SipherHandle, SyncSipherHandle, bind_request


#: How masked secrets read (the same mask as tether.redact).
REDACTED = "***"


__all__ = ["VIEWING_KEY_REF", "SipherProvider", "SipherSessionAuth"]

logger = get_logger("tether.sipher")

#: The key, in validated params, that stands for a viewing key held in memory.
VIEWING_KEY_REF: Final = "defaultViewingKeyRef"
#: The one error code that means "no such session (or expired, or foreign)".
SESSION_NOT_FOUND: Final = "SESSION_NOT_FOUND"
#: The daily quota is spent: every session route, DELETE too, is refused.
DAILY_QUOTA_EXCEEDED: Final = "DAILY_QUOTA_EXCEEDED"

_VIEWING_KEY_NAMES: Final = frozenset({VIEWING_KEY, "default_viewing_key"})
#: Statuses that leave a create's outcome unknown: the service may have acted.
_CREATE_UNKNOWN: Final = frozenset({408, 502, 504})


def _ms_to_datetime(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def _scrub(value: Any) -> Any:
    """
    Mask viewing keys wherever they sit in a JSON-like value.
    """
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if k in _VIEWING_KEY_NAMES and v not in (None, "")
                else _scrub(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


@attrs.define
class _Liveness:
    """
    What this process knows about one remote session, for session-bound requests.
    """

    expires_at: float | None = None
    checked_at: float | None = None
    ended: str | None = None


class SipherProvider(Provider[SipherConfig]):
    """
    Sipher agent sessions: stored defaults applied through ``X-Session-Id``.

    Lifecycle: create (``POST /v1/sessions``), ping and get (``GET``), update
    (``PATCH``, a shallow merge of ``defaults``), close (``DELETE``). The service
    has no list endpoint and no way to tag a session, and a session's lifetime
    is fixed at create, so ``list``, ``find`` and ``renew`` are not supported:
    reconcile relies on tether's store and on the service's expiry.

    Session-bound requests (:meth:`bound_client`, :meth:`session_request`,
    :meth:`session_auth`) check that the session is live before they attach
    ``X-Session-Id``, because the service silently ignores an expired, unknown
    or foreign id and would run the request without the session's defaults.

    Do not instantiate directly: the manager builds providers.
    """

    config_class: ClassVar[type[SipherConfig]] = SipherConfig
    #: The session's operations, and its handles (``manager.session(SipherProvider)``).
    operations: ClassVar[Mapping[str, Operation]] = {
        "get": Operation(idempotent=True),
        "request": Operation(idempotent=False),
    }
    handle_class: ClassVar[type[SipherHandle]] = SipherHandle
    sync_handle_class: ClassVar[type[SyncSipherHandle]] = SyncSipherHandle
    capabilities: ClassVar[Capabilities] = Capabilities(
        update=True,
        renew=False,
        get=True,
        list=False,
        find=False,
        server_ttl=True,
        default_lifetime=3600.0,
        min_lifetime=60.0,
        max_lifetime=86400.0,
        # Every successful GET counts against the daily "session" quota (2,000
        # a day on pro): ping every 30 s and one session eats it in 17 hours.
        ping_interval=300.0,
    )

    def __init__(
        self,
        config: SipherConfig,
        *,
        client: httpx.AsyncClient,
        name: str = "sipher",
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(config, client=client, name=name)
        #: Seconds since the epoch; tests set it to ``ManualClock().time``.
        self.clock: Callable[[], float] = clock or time.time
        # Viewing keys given to parse_create/parse_update live here, never in
        # params: params get an opaque reference (a keyed hash with a salt that
        # exists only in this process, so the reference reveals nothing).
        self._salt = secrets.token_bytes(32)
        self._viewing_keys: dict[str, Secret] = {}
        self._liveness: dict[str, _Liveness] = {}
        self._log = logger.bind(provider=name)
        # The daily "session" quota, as far as this process can tell: its own
        # successful session requests per UTC day, and when the service said
        # the quota is spent, until when.
        self._quota_day: str | None = None
        self._quota_used = 0
        self._quota_spent_until: float | None = None

    # -- set-up ------------------------------------------------------------------

    @classmethod
    def client_options(cls, config: SipherConfig) -> ClientOptions:
        key = config.api_key.reveal()
        headers = {"Accept": "application/json"}
        if config.auth_scheme == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers["X-API-Key"] = key
        return ClientOptions(
            base_url=config.base_url, headers=headers, timeout=config.timeout
        )

    def credential_id(self) -> str | None:
        """
        A fingerprint of the API key alone: sessions belong to the key.
        """
        digest = hashlib.sha256(self.config.api_key.reveal().encode()).hexdigest()
        return f"{self.name}:{digest[:16]}"

    # -- parameters --------------------------------------------------------------

    def _hold_viewing_key(self, plain: str) -> str:
        ref = hmac.new(self._salt, plain.encode(), hashlib.sha256).hexdigest()[:24]
        ref = f"vkref_{ref}"
        self._viewing_keys[ref] = Secret(plain)
        return ref

    def _parse(self, params: Mapping[str, Any], operation: str) -> dict[str, Any]:
        params = dict(params)
        ref = params.pop(VIEWING_KEY_REF, None)
        defaults: dict[str, Any] = normalise_defaults(
            params, provider=self.name, operation=operation
        )
        plain = defaults.pop(VIEWING_KEY, None)
        if plain is not None:
            defaults[VIEWING_KEY_REF] = self._hold_viewing_key(plain)
        elif ref is not None:
            if str(ref) not in self._viewing_keys:
                raise self._unknown_ref()
            defaults[VIEWING_KEY_REF] = ref
        return defaults

    def _unknown_ref(self) -> InvalidParameterError:
        msg = (
            f"{self.name}: the session's viewing key was held by another "
            "process or provider instance; pass default_viewing_key again "
            "or configure default_viewing_key"
        )
        return InvalidParameterError(
            msg,
            field="default_viewing_key",
            allowed="the viewing key itself",
            provider=self.name,
        )

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate session defaults; the result holds no viewing key.

        Accepts ``chain``, ``privacy_level``/``privacyLevel``,
        ``rpc_provider``/``rpcProvider``, ``backend`` and
        ``default_viewing_key``/``defaultViewingKey``, directly or in a
        ``defaults`` mapping. A viewing key is replaced by an opaque reference to
        a copy held in this provider's memory.

        Raises:
            InvalidParameterError: Naming the field and the allowed values.
        """
        return self._parse(params, "create")

    def parse_update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate changed defaults, as :meth:`parse_create`; the TTL cannot change.
        """
        return self._parse(changes, "update")

    def lifetime_for(
        self, lifetime: float | None, params: Mapping[str, Any]
    ) -> float | None:
        """
        tether's ``lifetime=`` is ``ttlSeconds``: whole seconds, 60 to 86400.
        """
        result = super().lifetime_for(lifetime, params)
        if result is not None and result != int(result):
            msg = f"{self.name}: lifetime must be whole seconds, not {result}"
            raise InvalidParameterError(
                msg,
                field="lifetime",
                value=result,
                allowed="whole seconds from 60 to 86400",
                provider=self.name,
            )
        return result

    def _wire_defaults(
        self, params: Mapping[str, Any], operation: str
    ) -> dict[str, str]:
        """
        The ``defaults`` to send, with the viewing key put back in.
        """
        parsed = self._parse(params, operation)
        ref = parsed.pop(VIEWING_KEY_REF, None)
        wire: dict[str, str] = dict(parsed)
        if ref is not None:
            held = self._viewing_keys.get(str(ref))
            if held is None:
                raise self._unknown_ref()
            wire[VIEWING_KEY] = held.reveal()
        elif operation == "create" and self.config.default_viewing_key is not None:
            wire[VIEWING_KEY] = self.config.default_viewing_key.reveal()
        return wire

    # -- the daily session quota ------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        session_id: str | None = None,
        ok: Sequence[int] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """
        :meth:`Provider.request`, counting what the daily session quota spends.
        """
        try:
            response = await super().request(
                method,
                url,
                operation=operation,
                session_id=session_id,
                ok=ok,
                **kwargs,
            )
        except RateLimitedError as exc:
            if exc.code == DAILY_QUOTA_EXCEEDED and url.startswith("/v1/sessions"):
                wait = exc.retry_after if exc.retry_after is not None else 3600.0
                self._quota_spent_until = self.clock() + wait
                self._log.warning("tether.sipher.session_quota_spent", retry_after=wait)
            raise
        if url.startswith("/v1/sessions") and response.status_code < 400:  # noqa: PLR2004
            self._quota_today()
            self._quota_used += 1
        return response

    def _quota_today(self) -> None:
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        if day != self._quota_day:
            self._quota_day = day
            self._quota_used = 0

    def _ping_saves_quota(self) -> str | None:
        """
        Why a ping should not ask the service now, or ``None``.
        """
        now = self.clock()
        if self._quota_spent_until is not None:
            if now < self._quota_spent_until:
                return "the daily session quota is spent"
            self._quota_spent_until = None
        quota = self.config.session_quota
        if quota is None:
            return None
        self._quota_today()
        # Keep one request for closing each session still known to be open.
        reserve = max(
            1, sum(1 for live in self._liveness.values() if live.ended is None)
        )
        if quota - self._quota_used <= reserve:
            return "the daily session quota left is kept for closing sessions"
        return None

    # -- reading answers ---------------------------------------------------------

    def _data(
        self, response: httpx.Response, *, operation: str, session_id: str | None
    ) -> dict[str, Any]:
        """
        The ``data`` of a success envelope, checked to be about a session.
        """
        cls = OutcomeUnknownError if operation == "create" else ProviderUnavailableError
        try:
            payload = response.json()
        except ValueError as exc:
            msg = f"{self.name} answered {response.status_code} with a body that is not JSON"
            raise cls(
                msg,
                provider=self.name,
                operation=operation,
                session_id=session_id,
                status_code=response.status_code,
            ) from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not SESSION_ID_PATTERN.match(
            str(data.get("sessionId", ""))
        ):
            msg = f"{self.name} answered {response.status_code} without a session"
            raise cls(
                msg,
                provider=self.name,
                operation=operation,
                session_id=session_id,
                status_code=response.status_code,
                body=_scrub(payload),
            )
        return data

    def _remote(
        self, data: Mapping[str, Any], previous: Mapping[str, Any] | None = None
    ) -> RemoteSession:
        defaults = data.get("defaults")
        defaults = dict(defaults) if isinstance(defaults, Mapping) else {}
        info: dict[str, Any] = dict(previous or {})
        info["defaults"] = {k: v for k, v in defaults.items() if k != VIEWING_KEY}
        info["viewingKeySet"] = VIEWING_KEY in defaults
        for name in ("createdAt", "expiresAt", "lastAccessedAt"):
            if isinstance(data.get(name), int):
                info[name] = data[name]
        remote_id = str(data["sessionId"])
        expires_at = _ms_to_datetime(data.get("expiresAt"))
        if remote_id not in self._liveness:
            self._prune()
        live = self._liveness.setdefault(remote_id, _Liveness())
        live.checked_at = self.clock()
        if expires_at is not None:
            live.expires_at = expires_at.timestamp()
        return RemoteSession(
            id=remote_id, raw_state="active", expires_at=expires_at, data=info
        )

    def _prune(self) -> None:
        # Past its deadline a session is refused on the deadline alone, so what
        # we learned about it is no longer needed.
        now = self.clock()
        for remote_id in [
            rid
            for rid, live in self._liveness.items()
            if live.expires_at is not None and live.expires_at < now
        ]:
            del self._liveness[remote_id]

    def _envelope(self, response: httpx.Response) -> tuple[str | None, str | None, Any]:
        try:
            body = response.json()
        except ValueError:
            return None, None, None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None, None, None
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
            error.get("details"),
        )

    def error_from_response(
        self,
        response: httpx.Response,
        *,
        operation: str,
        session_id: str | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> ProviderError:
        """
        Map Sipher's ``{success: false, error: {code, message, details}}``.

        401/403 (``UNAUTHORIZED``, ``INVALID_API_KEY``, ``TIER_ACCESS_DENIED``)
        -> AuthError; 404 (``SESSION_NOT_FOUND``) -> RemoteNotFoundError; 400
        (``VALIDATION_ERROR``, ``INVALID_JSON``) -> RequestRejectedError; 429
        (``RATE_LIMIT_EXCEEDED``, ``RATE_LIMITED``, ``DAILY_QUOTA_EXCEEDED``) ->
        RateLimitedError with ``retry_after`` from ``Retry-After``, else from
        the details; 408 and 5xx -> ProviderUnavailableError.
        """
        env_code, env_message, details = self._envelope(response)
        code = code or env_code
        if message is None and env_message:
            message = f"{self.name}: {self._mask(env_message)}"
        error = super().error_from_response(
            response,
            operation=operation,
            session_id=session_id,
            message=message,
            code=code,
        )
        error.body = self._mask(_scrub(error.body))
        if isinstance(error, RateLimitedError) and error.retry_after is None:
            error.retry_after = self._retry_after_from(details)
        if operation == "create" and response.status_code in _CREATE_UNKNOWN:
            # The request reached the service, which may have made the session
            # and lost the answer: a gateway gave up waiting (502, 504), or the
            # service's own 30 s timeout answered 408 while the handler ran on.
            return OutcomeUnknownError(
                str(error.args[0]),
                provider=self.name,
                operation=operation,
                session_id=session_id,
                status_code=response.status_code,
                body=error.body,
                code=error.code,
            )
        return error

    def _known_secrets(self) -> list[str]:
        known = [self.config.api_key.reveal()]
        if self.config.default_viewing_key is not None:
            known.append(self.config.default_viewing_key.reveal())
        known.extend(held.reveal() for held in self._viewing_keys.values())
        # Longest first, so a key that contains another is masked whole.
        return sorted((k for k in known if k), key=len, reverse=True)

    def _mask(self, value: Any) -> Any:
        """
        *value* with every secret this provider holds masked, then the core's
        redaction (secret-named keys, secret-shaped strings).
        """
        if isinstance(value, str):
            for secret in self._known_secrets():
                value = value.replace(secret, REDACTED)
            return redact_text(value)
        if isinstance(value, Mapping):
            return {k: self._mask(v) for k, v in redact(value).items()}
        if isinstance(value, list | tuple):
            return [self._mask(v) for v in value]
        return value

    def _retry_after_from(self, details: Any) -> float | None:
        if not isinstance(details, Mapping):
            return None
        retry_after = details.get("retryAfter")
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            return max(0.0, float(retry_after))
        reset_at = details.get("resetAt")
        if isinstance(reset_at, str):
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(reset_at)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, when.timestamp() - self.clock())
        return None

    def _is_session_not_found(self, response: httpx.Response) -> bool:
        return (
            response.status_code == httpx.codes.NOT_FOUND
            and self._envelope(response)[0] == SESSION_NOT_FOUND
        )

    # -- the lifecycle -------------------------------------------------------------

    def _path(self, session: Session) -> str:
        remote_id = session.remote_id
        if remote_id is None or not SESSION_ID_PATTERN.match(remote_id):
            msg = f"{self.name}: session {session.id} has no Sipher session id"
            raise SessionLostError(
                msg,
                session_id=session.id,
                provider=self.name,
                state=session.state.value,
            )
        return f"/v1/sessions/{remote_id}"

    def _expires_at(self, session: Session) -> float | None:
        if session.remote_id is not None:
            live = self._liveness.get(session.remote_id)
            if live is not None and live.expires_at is not None:
                return live.expires_at
        if session.expires_at is not None:
            return session.expires_at.timestamp()
        expires_ms = session.data.get("expiresAt")
        if isinstance(expires_ms, int | float) and not isinstance(expires_ms, bool):
            return expires_ms / 1000
        return None

    def _past_expiry(self, session: Session) -> bool:
        expires_at = self._expires_at(session)
        return (
            expires_at is not None
            and self.clock() >= expires_at - self.config.expiry_margin
        )

    def _mark_ended(self, session: Session, how: str) -> None:
        if session.remote_id is not None:
            live = self._liveness.setdefault(session.remote_id, _Liveness())
            # A session tether closed stays closed: the 404 (or the deadline)
            # seen afterwards is the close's own doing, not a loss.
            if live.ended != "closed":
                live.ended = how

    async def create(self, request: CreateRequest) -> RemoteSession:
        """
        ``POST /v1/sessions`` with ``{defaults, ttlSeconds}``.

        Sipher cannot tag a session (unknown keys are stripped), so the session
        is not tagged with tether's id. A create sent without a good answer (no
        answer, 408, 502, 504, or a garbled 201) is an
        :class:`~tether.exceptions.OutcomeUnknownError`: the session may exist,
        and since the service can neither list nor find sessions, the manager
        never repeats it; the record stays ``CREATING`` for reconcile, and the
        service's TTL (the ``lifetime``, at most 24 h) ends the orphan.
        """
        body: dict[str, Any] = {
            "defaults": self._wire_defaults(request.params, "create")
        }
        if request.lifetime is not None:
            body["ttlSeconds"] = int(request.lifetime)
        response = await self.request(
            "POST",
            "/v1/sessions",
            operation="create",
            session_id=request.tether_id,
            json=body,
        )
        remote = self._remote(
            self._data(response, operation="create", session_id=request.tether_id)
        )
        self._log.info(
            "tether.sipher.session_created",
            session_id=request.tether_id,
            remote_id=remote.id,
            expires_at=remote.expires_at.isoformat() if remote.expires_at else None,
            fields=sorted(remote.data["defaults"]),
        )
        return remote

    async def get(self, session: Session) -> RemoteSession | None:
        """
        ``GET /v1/sessions/{id}``; ``None`` on ``SESSION_NOT_FOUND`` (unknown,
        expired or another key's: the service does not say which).
        """
        response = await self.request(
            "GET",
            self._path(session),
            operation="get",
            session_id=session.id,
            ok=(httpx.codes.NOT_FOUND,),
        )
        if response.status_code == httpx.codes.NOT_FOUND:
            if not self._is_session_not_found(response):
                raise self.error_from_response(
                    response, operation="get", session_id=session.id
                )
            self._mark_ended(session, "gone")
            return None
        return self._remote(
            self._data(response, operation="get", session_id=session.id), session.data
        )

    async def ping(self, session: Session) -> Health:
        """
        ``GET /v1/sessions/{id}``, unless ``expiresAt`` has already passed.

        404 ``SESSION_NOT_FOUND`` is ``EXPIRED`` when the deadline has passed and
        ``GONE`` before it (lost on a restart without Redis, or deleted).

        Pings spend the daily ``session`` quota that closes need too (a spent
        quota refuses ``DELETE`` with 429 ``DAILY_QUOTA_EXCEEDED`` for hours).
        So a ping does not ask the service, answering ``ALIVE`` with
        ``raw_state="unverified"``, while the service says the quota is spent,
        or while what ``session_quota`` leaves would not cover closing every
        session this provider knows to be open.
        """
        if self._past_expiry(session):
            self._mark_ended(session, "expired")
            return Health(
                status=HealthStatus.EXPIRED,
                raw_state="expired",
                detail="expiresAt has passed (Sipher's expiry is absolute)",
            )
        saving = self._ping_saves_quota()
        if saving is not None:
            # Not asked: the local deadline still ends it (above).
            return Health(
                status=HealthStatus.ALIVE,
                raw_state="unverified",
                detail=f"not asked: {saving}",
            )
        remote = await self.get(session)
        if remote is None:
            expired = self._past_expiry(session)
            return Health(
                status=HealthStatus.EXPIRED if expired else HealthStatus.GONE,
                raw_state=SESSION_NOT_FOUND,
                detail="the service no longer has the session",
            )
        return Health(
            status=HealthStatus.ALIVE,
            raw_state=remote.raw_state,
            expires_at=remote.expires_at,
            data=remote.data,
        )

    async def update(
        self, session: Session, changes: Mapping[str, Any]
    ) -> RemoteSession:
        """
        ``PATCH /v1/sessions/{id}``: a shallow merge of ``defaults``.

        Keys cannot be cleared and the TTL cannot change.
        """
        body = {"defaults": self._wire_defaults(changes, "update")}
        response = await self.request(
            "PATCH",
            self._path(session),
            operation="update",
            session_id=session.id,
            json=body,
        )
        remote = self._remote(
            self._data(response, operation="update", session_id=session.id),
            session.data,
        )
        self._log.info(
            "tether.sipher.session_updated",
            session_id=session.id,
            remote_id=remote.id,
            fields=sorted(k for k in body["defaults"] if k != VIEWING_KEY),
        )
        return remote

    async def close(self, session: Session) -> None:
        """
        ``DELETE /v1/sessions/{id}``; ``SESSION_NOT_FOUND`` counts as closed.
        """
        if session.remote_id is None:
            return
        response = await self.request(
            "DELETE",
            self._path(session),
            operation="close",
            session_id=session.id,
            ok=(httpx.codes.NOT_FOUND,),
        )
        if (
            response.status_code == httpx.codes.NOT_FOUND
            and not self._is_session_not_found(response)
        ):
            raise self.error_from_response(
                response, operation="close", session_id=session.id
            )
        # The manager closes sessions at their deadline too: those are expired.
        self._mark_ended(session, "expired" if self._past_expiry(session) else "closed")
        self._log.info(
            "tether.sipher.session_deleted",
            session_id=session.id,
            remote_id=session.remote_id,
            already_gone=response.status_code == httpx.codes.NOT_FOUND,
        )

    # -- session-bound requests ------------------------------------------------------

    def _ended_error(
        self, session: Session, how: str, detail: str
    ) -> SessionEndedError:
        msg = f"session {session.id} ({self.name}) is {how}: {detail}"
        if how == "expired":
            return SessionExpiredError(
                msg, session_id=session.id, provider=self.name, state="expired"
            )
        if how == "closed":
            from tether.exceptions import SessionClosedError  # noqa: PLC0415

            return SessionClosedError(
                msg, session_id=session.id, provider=self.name, state="closed"
            )
        return SessionLostError(
            msg, session_id=session.id, provider=self.name, state="lost"
        )

    async def ensure_live(self, session: Session, *, verify: str | None = None) -> None:
        """
        Make sure a request sent with this session's ``X-Session-Id`` gets its
        defaults, or raise.

        Checks the session's state, its ``expiresAt`` (less ``expiry_margin``)
        on the provider's clock, and, by the *verify* policy (default: the
        config's), asks the service with ``GET /v1/sessions/{id}``.

        Raises:
            SessionExpiredError: The deadline has passed.
            SessionLostError: The service no longer has the session.
            SessionClosedError: It was closed.
            ProviderError: The check itself failed; nothing was sent.
        """
        session.ensure_usable()
        policy = verify or self.config.verify
        if policy not in ("stale", "always", "never"):
            msg = f"{self.name}: verify must be 'stale', 'always' or 'never', not {policy!r}"
            raise InvalidParameterError(
                msg,
                field="verify",
                value=policy,
                allowed="stale, always, never",
                provider=self.name,
            )
        self._path(session)
        live = self._liveness.get(str(session.remote_id))
        if live is not None and live.ended is not None:
            raise self._refuse(session, live.ended, "known from an earlier answer")
        if self._past_expiry(session):
            self._mark_ended(session, "expired")
            raise self._refuse(session, "expired", "its expiresAt has passed")
        now = self.clock()
        checked_at = live.checked_at if live is not None else None
        stale = checked_at is None or now - checked_at >= self.config.verify_after
        if policy == "always" or (policy == "stale" and stale):
            remote = await self.get(session)
            if remote is None:
                how = "expired" if self._past_expiry(session) else "lost"
                self._mark_ended(session, how)
                raise self._refuse(
                    session, how, "the service answered SESSION_NOT_FOUND"
                )
            if self._past_expiry(session):
                raise self._refuse(session, "expired", "its expiresAt has passed")

    def _refuse(self, session: Session, how: str, detail: str) -> SessionEndedError:
        self._log.warning(
            "tether.sipher.bound_request_refused",
            session_id=session.id,
            remote_id=session.remote_id,
            reason=how,
        )
        return self._ended_error(session, how, detail)

    def session_auth(
        self, session: Session, *, verify: str | None = None
    ) -> SipherSessionAuth:
        """
        An :class:`httpx.Auth` that binds any ``httpx.AsyncClient`` to the session.

        Each request is checked with :meth:`ensure_live` and then gets the API
        key and ``X-Session-Id``.
        """
        return SipherSessionAuth(self, session, verify=verify)

    @contextlib.asynccontextmanager
    async def bound_client(
        self, session: Session, *, verify: str | None = None, **kwargs: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        """
        An ``httpx.AsyncClient`` for Sipher's other routes, bound to the session.

        Every request it sends carries ``X-Session-Id`` after :meth:`ensure_live`
        passed; a dead session raises a
        :class:`~tether.exceptions.SessionEndedError` and sends nothing.
        *kwargs* go to :class:`httpx.AsyncClient` (``transport=``, ...).

        Example::

            async with provider.bound_client(session) as client:
                r = await client.post("/v1/backends/compare",
                                      json={"operation": "stealth_privacy"})
        """
        session.ensure_usable()
        options = self.client_options(self.config)
        kwargs.setdefault("timeout", options.timeout)
        async with httpx.AsyncClient(
            base_url=options.base_url,
            auth=self.session_auth(session, verify=verify),
            **kwargs,
        ) as client:
            yield client

    async def session_request(
        self,
        session: Session,
        method: str,
        url: str,
        *,
        verify: str | None = None,
        ok: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """
        Send one request on the session's behalf through the provider's client.

        Returns the response when it succeeded (or its status is in *ok*); error
        statuses raise tether's errors, as for lifecycle calls.
        """
        await self.ensure_live(session, verify=verify)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["X-Session-Id"] = str(session.remote_id)
        return await self.request(
            method,
            url,
            operation="session_request",
            session_id=session.id,
            ok=ok,
            headers=headers,
            **kwargs,
        )


class SipherSessionAuth(httpx.Auth):
    """
    httpx auth flow: API key plus ``X-Session-Id``, after a liveness check.

    Get one from :meth:`SipherProvider.session_auth`. Async clients only.
    """

    def __init__(
        self, provider: SipherProvider, session: Session, *, verify: str | None = None
    ) -> None:
        self._provider = provider
        self._session = session
        self._verify = verify

    def __repr__(self) -> str:
        return f"<SipherSessionAuth session={self._session.id!r}>"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        msg = "SipherSessionAuth needs an httpx.AsyncClient"
        raise RuntimeError(msg)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await self._provider.ensure_live(self._session, verify=self._verify)
        bind_request(self._provider, self._session, request)
        yield request
