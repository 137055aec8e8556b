"""
The Morpheus provider: model and bid sessions on the Morpheus API Gateway.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, overload

import attrs
import httpx

from tether import Health, HealthStatus, Session, SessionState
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
    ConfigError,
    InvalidParameterError,
    OutcomeUnknownError,
    PermanentProviderError,
    ProviderError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    RequestRejectedError,
    SessionClosedError,
    SessionEndedError,
    SessionExpiredError,
    SessionLostError,
    TransientProviderError,
)
from tether_morpheus._client import ChatStream, MorpheusClient
from tether_morpheus._config import MorpheusConfig
from tether_morpheus._errors import from_response
from tether_morpheus._handle import MorpheusHandle, SyncMorpheusHandle
from tether_morpheus._models import (
    ChatCompletion,
    Model,
    PingResult,
    PingStatus,
    RatedBid,
)


__all__ = ["MorpheusProvider"]

logger = get_logger("tether.morpheus")

HEX32: Final = re.compile(r"^0x[0-9a-fA-F]{64}$")
_PARAMS: Final = ("model", "bid_id", "approve", "direct_payment", "failover")
_PING: Final[Mapping[PingStatus, HealthStatus]] = {
    PingStatus.ALIVE: HealthStatus.ALIVE,
    PingStatus.EXPIRED: HealthStatus.EXPIRED,
    PingStatus.DEAD: HealthStatus.GONE,
    PingStatus.NO_SESSION: HealthStatus.GONE,
    PingStatus.ERROR: HealthStatus.DEGRADED,
    PingStatus.UNKNOWN: HealthStatus.DEGRADED,
}

GatewayMode = Literal["sessions", "lease"]

#: Chat errors that say the gateway's pool is failing the lease's model (and
#: count towards a lease's health); auth, input, balance and rate limits do not.
_POOL_GONE_CODES: Final = frozenset({"session_expired", "session_not_found"})
_ENDED: Final[Mapping[SessionState, type[SessionEndedError]]] = {
    SessionState.EXPIRED: SessionExpiredError,
    SessionState.LOST: SessionLostError,
}


def _pool_failure(error: ProviderError) -> bool:
    return isinstance(error, ProviderUnavailableError) or (
        isinstance(error, RemoteNotFoundError) and error.code in _POOL_GONE_CODES
    )


@attrs.define
class _Lease:
    """
    What the provider knows of a lease: there is no remote state to ask.
    """

    deadline: float | None
    failures: int = 0
    last_error: str | None = None
    ended: SessionState | None = None


@attrs.define
class _Attempt:
    """
    A session-mode create this provider sent: what it asked for, and the
    gateway's session id once the answer came.
    """

    data: dict[str, Any]
    duration: int
    started: float
    remote_id: str | None = None


#: Seconds the model lists are reused (the gateway itself caches them 300 s).
MODELS_TTL: Final = 300.0


class MorpheusProvider(Provider[MorpheusConfig]):
    """
    Sessions on the Morpheus API Gateway, an AI inference marketplace.

    Create parameters (exactly one of ``model`` and ``bid_id``):

    * ``model``: a model name (resolved to its hex id through ``/models``) or a
      hex id (``0x`` + 64 hex digits). Unknown names and ids fail; the gateway's
      own silent fallback to a default model is never reached.
    * ``bid_id``: a bid's hex id, for one provider's offer (see :meth:`candidates`).
    * ``approve``: ``True`` to approve MOR spending of the highest bid price x
      duration first (by ``model``), or an explicit amount in wei.
    * ``direct_payment``, ``failover``: passed as ``directPayment`` and
      ``failover`` (v1.14.0 ignores both on model sessions).

    tether's ``lifetime=`` is sent as ``sessionDuration`` (60 to 86400 s, default
    3600). On a gateway with session routes one API key holds one session, so
    tether never sends a second create on a key whose session is live. Against
    today's gateway (no session routes) a session is a client-side lease over
    key + model: create checks the key and its credit, the lease's health comes
    from its chats, and one key may hold many leases (this instance's
    ``capabilities`` then have no per-key limit).

    Provider-specific operations: :meth:`chat`, :meth:`candidates`,
    :meth:`failover_candidates`, :meth:`resolve_model`, :meth:`mode`, and
    :attr:`api` (the whole gateway client).
    """

    config_class: ClassVar[type[MorpheusConfig]] = MorpheusConfig
    #: The session's operations, and its handle (``manager.session(MorpheusProvider)``).
    operations: ClassVar[Mapping[str, Operation]] = {
        "chat": Operation(idempotent=False)
    }
    handle_class: ClassVar[type[MorpheusHandle]] = MorpheusHandle
    sync_handle_class: ClassVar[type[SyncMorpheusHandle]] = SyncMorpheusHandle
    capabilities: ClassVar[Capabilities] = Capabilities(
        server_ttl=True,
        default_lifetime=3600.0,
        min_lifetime=60.0,
        max_lifetime=86400.0,
        max_sessions_per_credential=1,
        # find: the key's current session (pingsession tells which one) is
        # adopted for a create whose answer was lost.
        find=True,
        # A session-mode ping spends a real inference and queues behind live
        # requests (a lease ping is a cheap model-list read).
        ping_interval=900.0,
    )

    def __init__(
        self, config: MorpheusConfig, *, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(config, client=client, name=name)
        #: The typed gateway client (models, sessions, chat, account...).
        self.api = MorpheusClient(
            client, provider=name, access_token=config.access_token
        )
        self._mode: GatewayMode | None = None
        if config.mode != "auto":
            self._set_mode(config.mode, detected=False)
        self._failed_providers: set[str] = set()
        self._bid_providers: dict[str, str] = {}
        self._leases: dict[str, _Lease] = {}
        self._attempts: dict[str, _Attempt] = {}
        #: Gateway session ids this provider closed (a stale Session is refused).
        self._closed: set[str] = set()
        self._models_cache: dict[str, tuple[float, list[Model]]] = {}
        self._session_routes: bool | None = None

    @classmethod
    def client_options(cls, config: MorpheusConfig) -> ClientOptions:
        return ClientOptions(
            base_url=config.base_url,
            headers={
                "Authorization": f"Bearer {config.api_key.reveal()}",
                "Accept": "application/json",
            },
            timeout=config.timeout,
        )

    def credential_id(self) -> str | None:
        # The session slot belongs to the API key alone (not the JWT).
        digest = hashlib.sha256(self.config.api_key.reveal().encode()).hexdigest()
        return f"{self.name}:{digest[:16]}"

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
        Read the gateway's envelopes (see :mod:`tether_morpheus._errors`).
        """
        error = from_response(
            response, provider=self.name, operation=operation, session_id=session_id
        )
        if code is not None:
            error.code = code
        return error

    # -- parameters ------------------------------------------------------------

    def _invalid(
        self, msg: str, *, field: str, value: object = None, allowed: str | None = None
    ) -> InvalidParameterError:
        return InvalidParameterError(
            f"{self.name}: {msg}",
            field=field,
            value=value,
            allowed=allowed,
            provider=self.name,
        )

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in params if k not in _PARAMS]
        if unknown:
            raise self._invalid(
                f"unknown parameter {unknown[0]!r}",
                field=unknown[0],
                allowed=", ".join(_PARAMS),
            )
        model, bid_id = params.get("model"), params.get("bid_id")
        if (model is None) == (bid_id is None):
            raise self._invalid(
                "give exactly one of model= and bid_id=",
                field="model" if model is None else "bid_id",
                allowed="a model name or hex id, or a bid id (not both)",
            )
        parsed: dict[str, Any] = {}
        if model is not None:
            if not isinstance(model, str) or not model.strip():
                raise self._invalid(
                    "model must be a non-empty string", field="model", value=model
                )
            if model.startswith("0x") and not HEX32.fullmatch(model):
                raise self._invalid(
                    "a hex model id is 0x followed by 64 hex digits",
                    field="model",
                    value=model,
                    allowed="a model name or 0x + 64 hex digits",
                )
            parsed["model"] = model.strip()
        else:
            if not isinstance(bid_id, str) or not HEX32.fullmatch(bid_id):
                raise self._invalid(
                    "bid_id must be 0x followed by 64 hex digits",
                    field="bid_id",
                    value=bid_id,
                    allowed="0x + 64 hex digits",
                )
            parsed["bid_id"] = bid_id
        approve = params.get("approve", False)
        if isinstance(approve, bool):
            if approve and bid_id is not None:
                raise self._invalid(
                    "approve=True prices the session from a model's bids; with bid_id= "
                    "give the amount to approve (approve=<wei>)",
                    field="approve",
                    value=approve,
                    allowed="False, or a positive amount in wei",
                )
        elif not isinstance(approve, int) or approve <= 0:
            raise self._invalid(
                "approve must be True/False or a positive amount in wei",
                field="approve",
                value=approve,
                allowed="True, False or a positive integer",
            )
        parsed["approve"] = approve
        for flag in ("direct_payment", "failover"):
            value = params.get(flag, False)
            if not isinstance(value, bool):
                raise self._invalid(
                    f"{flag} must be True or False",
                    field=flag,
                    value=value,
                    allowed="True or False",
                )
            parsed[flag] = value
        return parsed

    def lifetime_for(
        self, lifetime: float | None, params: Mapping[str, Any]
    ) -> float | None:
        # sessionDuration is whole seconds: round up so tether's deadline and
        # the gateway's agree.
        checked = super().lifetime_for(lifetime, params)
        return None if checked is None else float(math.ceil(checked))

    # -- gateway mode --------------------------------------------------------------

    async def mode(self) -> GatewayMode:
        """
        ``"sessions"`` when the gateway has session routes, else ``"lease"``.

        Detected once (``mode="auto"``) from the OpenAPI document, or from a
        side-effect-free probe of ``/session/modelsession``.
        """
        if self._mode is None:
            self._set_mode(
                "sessions" if await self.api.has_session_routes() else "lease"
            )
        assert self._mode is not None  # noqa: S101
        return self._mode

    def _set_mode(self, mode: GatewayMode, *, detected: bool = True) -> None:
        self._mode = mode
        if mode == "lease":
            # Today's gateway has no per-key session: a key may hold leases on
            # several models at once. The manager reads provider.capabilities
            # per instance, so the one-per-key limit stays with the session era.
            # A lease's create only reads, so its outcome is never unknown.
            self.set_capabilities(max_sessions_per_credential=None, find=False)
        else:
            self.set_capabilities()
        if detected:
            logger.info("tether.morpheus.mode_detected", provider=self.name, mode=mode)

    # -- models and bids -----------------------------------------------------------

    async def resolve_model(self, model: str) -> Model:
        """
        The model called *model* (a name or a hex id), from the gateway's lists.

        Raises:
            InvalidParameterError: No such model (the gateway itself would
                silently use its default model instead).
        """
        models = await self._cached_models("models")
        found = _find_model(models, model)
        if found is None:
            models = await self._cached_models("all_models")
            found = _find_model(models, model)
        if found is None:
            names = ", ".join(sorted(m.name for m in models)[:20])
            raise self._invalid(
                f"no model {model!r} on this gateway",
                field="model",
                value=model,
                allowed=names,
            )
        return found

    async def _cached_models(
        self, which: Literal["models", "all_models"]
    ) -> list[Model]:
        # Model lists change rarely: reuse one for MODELS_TTL seconds, so a
        # create by a known model costs one request (the open).
        now = self.clock()
        cached = self._models_cache.get(which)
        if cached is not None and now - cached[0] < MODELS_TTL:
            return cached[1]
        fetch = self.api.models if which == "models" else self.api.all_models
        models = await fetch()
        self._models_cache[which] = (now, models)
        return models

    async def bids(self, model: str) -> list[RatedBid]:
        """
        The rated bids of *model* (name or hex id), best score first.
        """
        resolved = await self.resolve_model(model)
        bids = await self.api.rated_bids(resolved.blockchain_id)
        for bid in bids:
            self._bid_providers[bid.id] = bid.provider
        return bids

    async def candidates(
        self, model: str, *, exclude_providers: Iterable[str] = ()
    ) -> list[str]:
        """
        Bid ids of *model*, best score first, without providers that failed.

        A provider counts as failed once a bid session on it failed with a
        transient error in this process (see :meth:`mark_failed`), or when it is
        in *exclude_providers*.
        """
        skip = {p.lower() for p in exclude_providers} | self._failed_providers
        return [b.id for b in await self.bids(model) if b.provider.lower() not in skip]

    async def failover_candidates(
        self,
        model: str,
        *,
        fallback_models: Sequence[str] = (),
        **params: Any,
    ) -> list[Any]:
        """
        :class:`tether.Candidate` values: *model*'s bids best first, then the
        fallback models by name; pass them to :class:`tether.FailoverPolicy`.

        In lease mode there are no bid sessions: *model*, then the fallback
        models, all by name.
        """
        from tether import Candidate  # noqa: PLC0415

        if await self.mode() == "lease":
            return [
                Candidate(provider=self.name, params={"model": m, **params})
                for m in (model, *fallback_models)
            ]
        bids = await self.candidates(model)
        result = [
            Candidate(provider=self.name, params={"bid_id": b, **params}) for b in bids
        ]
        result.extend(
            Candidate(provider=self.name, params={"model": m, **params})
            for m in fallback_models
        )
        return result

    def mark_failed(self, bid_or_provider: str) -> None:
        """
        Skip a provider (given by its address or one of its bid ids) in :meth:`candidates`.
        """
        address = self._bid_providers.get(bid_or_provider, bid_or_provider)
        self._failed_providers.add(address.lower())

    # -- lifecycle -----------------------------------------------------------------

    async def create(self, request: CreateRequest) -> RemoteSession:
        params = request.params
        duration = int(request.lifetime or self.capabilities.default_lifetime or 3600)
        try:
            mode = await self.mode()
            if mode == "lease" and self.config.mode == "lease":
                await self._refuse_forced_lease()
        except OutcomeUnknownError as exc:
            raise self._read_failed(exc) from exc
        if mode == "sessions":
            try:
                return await self._create_session(request, duration)
            except RemoteNotFoundError as exc:
                # A gateway that lost its session routes (auto mode only).
                if self.config.mode != "auto" or exc.status_code != 404:  # noqa: PLR2004
                    raise
                self._set_mode("lease")
        if params.get("bid_id") is not None or params.get("approve"):
            msg = (
                f"{self.name}: this gateway has no session routes, so bid sessions "
                "and approvals are not available (lease mode)"
            )
            raise RequestRejectedError(
                msg, provider=self.name, operation="create", code="lease_mode"
            )
        try:
            return await self._create_lease(request, duration)
        except OutcomeUnknownError as exc:
            # A lease's create only reads (balance, models): nothing was made.
            raise self._read_failed(exc) from exc

    def _read_failed(self, exc: OutcomeUnknownError) -> ProviderUnavailableError:
        """
        A lost answer to a step that cannot have created anything: a plain,
        retryable failure (an unknown outcome would leave the record CREATING
        and the key's one slot blocked).
        """
        return ProviderUnavailableError(
            f"{exc} (a read before the open: nothing was created)",
            provider=self.name,
            operation=exc.operation or "create",
            code="read_unanswered",
        )

    async def _refuse_forced_lease(self) -> None:
        """
        Refuse ``mode="lease"`` on a gateway with session routes (v1.14.x).

        There a model-only chat makes the gateway open its own session on the
        key, which tether's close of the lease never ends.
        """
        if self._session_routes is None:
            self._session_routes = await self.api.has_session_routes()
        if self._session_routes:
            msg = (
                f"{self.name}: mode='lease' on a gateway with session routes "
                "(v1.14.x): its chats would open gateway sessions that tether "
                "never closes; use mode='sessions' or mode='auto'"
            )
            raise ConfigError(msg, provider=self.name)

    async def _model_for_create(self, model: str) -> Model:
        try:
            return await self.resolve_model(model)
        except InvalidParameterError as exc:
            # A typed, permanent ProviderError, so the manager settles the
            # session as FAILED instead of leaving it CREATING.
            raise RemoteNotFoundError(
                str(exc), provider=self.name, operation="create", code="model_not_found"
            ) from exc

    async def _check_credit(self) -> None:
        """
        Check the key (and that it has credit) without an inference.

        The model list needs no auth; the balance does, and a wrong secret is
        refused there with 401 (:class:`~tether.exceptions.AuthError`).
        """
        balance = await self.api.balance()
        if balance is None:
            # A session-less gateway without billing: the first chat checks the key.
            logger.info("tether.morpheus.balance_unavailable", provider=self.name)
            return
        if balance.total_available <= 0:
            msg = (
                f"{self.name}: the API key's account has no credit "
                f"({balance.total_available} {balance.currency} available)"
            )
            raise PermanentProviderError(
                msg,
                provider=self.name,
                operation="create",
                code="insufficient_balance",
            )

    async def _create_lease(
        self, request: CreateRequest, duration: int
    ) -> RemoteSession:
        await self._check_credit()
        model = await self._model_for_create(str(request.params["model"]))
        self._prune_leases()
        deadline = self.clock() + duration
        self._leases[request.tether_id] = _Lease(deadline=deadline)
        logger.info(
            "tether.morpheus.lease_opened",
            provider=self.name,
            session_id=request.tether_id,
            model=model.name,
        )
        return RemoteSession(
            id=f"lease:{request.tether_id}",
            raw_state="lease",
            tether_id=request.tether_id,
            expires_at=datetime.fromtimestamp(deadline, UTC),
            data={
                "mode": "lease",
                "model": model.name,
                "model_id": model.blockchain_id,
                "session_duration": duration,
            },
        )

    async def _create_session(
        self, request: CreateRequest, duration: int
    ) -> RemoteSession:
        params = request.params
        direct, failover = (
            bool(params.get("direct_payment")),
            bool(params.get("failover")),
        )
        data: dict[str, Any] = {
            "mode": "sessions",
            "session_duration": duration,
            "direct_payment": direct,
            "failover": failover,
        }
        approve = params.get("approve", False)
        if params.get("model") is not None:
            try:
                model = await self._model_for_create(str(params["model"]))
            except OutcomeUnknownError as exc:
                raise self._read_failed(exc) from exc
            data.update(model=model.name, model_id=model.blockchain_id)
            if approve is True:
                try:
                    bids = await self.api.rated_bids(model.blockchain_id)
                except OutcomeUnknownError as exc:
                    raise self._read_failed(exc) from exc
                if not bids:
                    msg = f"{self.name}: model {model.name!r} has no bids to price an approval"
                    raise RemoteNotFoundError(
                        msg, provider=self.name, operation="create", code="no_bids"
                    )
                # The node may walk every bid, best first: cover the dearest.
                approve = max(b.cost(duration) for b in bids)
            if approve:
                approval = await self.api.approve(int(approve))
                data.update(approved=int(approve), approval_tx=approval.tx)
            attempt = self._attempts[request.tether_id] = _Attempt(
                data=dict(data), duration=duration, started=self.clock()
            )
            opened = await self.api.model_session(
                model.blockchain_id,
                session_duration=duration,
                direct_payment=direct,
                failover=failover,
            )
        else:
            bid_id = str(params["bid_id"])
            data["bid_id"] = bid_id
            if bid_id in self._bid_providers:
                data["provider_address"] = self._bid_providers[bid_id]
            if approve:
                approval = await self.api.approve(int(approve))
                data.update(approved=int(approve), approval_tx=approval.tx)
            attempt = self._attempts[request.tether_id] = _Attempt(
                data=dict(data), duration=duration, started=self.clock()
            )
            try:
                opened = await self.api.bid_session(
                    bid_id,
                    session_duration=duration,
                    direct_payment=direct,
                    failover=failover,
                )
            except TransientProviderError:
                if bid_id in self._bid_providers:
                    self.mark_failed(bid_id)
                raise
        attempt.remote_id = opened.session_id
        # The key prefix is not stored: legacy keys authenticate by it alone.
        if opened.note:
            data["note"] = opened.note
        logger.info(
            "tether.morpheus.session_opened",
            provider=self.name,
            session_id=request.tether_id,
            remote_id=opened.session_id,
            model=data.get("model"),
            bid_id=data.get("bid_id"),
        )
        return RemoteSession(
            id=opened.session_id,
            raw_state="active",
            tether_id=request.tether_id,
            # The gateway ends it sessionDuration after opening it.
            expires_at=datetime.fromtimestamp(self.clock() + duration, UTC),
            data=data,
        )

    async def ping(self, session: Session) -> Health:
        if session.data.get("mode") == "lease":
            return await self._ping_lease(session)
        result = await self.api.ping_session(session_id=session.id)
        status = _PING[result.status]
        detail = result.message or None
        if result.status is PingStatus.DEAD and result.error:
            detail = f"{result.message}: {result.error}"
        if (
            result.session_id is not None
            and session.remote_id is not None
            and result.session_id.lower() != session.remote_id.lower()
        ):
            # The key holds another session now (a chat with another model, or
            # another client): ours was closed or forgotten by the gateway.
            status = HealthStatus.GONE
            detail = "the API key now holds another session"
        return Health(status=status, raw_state=result.raw_status or None, detail=detail)

    async def _ping_lease(self, session: Session) -> Health:
        # Cheap: a model list read, no inference, no auth. What the lease's
        # chats saw says the rest: the gateway routes each through its pool.
        model_id = str(session.data.get("model_id", ""))
        models = await self.api.models()
        lease = self._lease(session)
        if not any(m.blockchain_id.lower() == model_id.lower() for m in models):
            lease.ended = SessionState.LOST
            return Health(
                status=HealthStatus.GONE,
                raw_state="model_unlisted",
                detail=f"model {session.data.get('model')!r} is no longer offered",
            )
        if not lease.failures:
            return Health(status=HealthStatus.ALIVE, raw_state="lease")
        detail = f"{lease.failures} chats failed in a row: {lease.last_error}"
        if lease.failures >= self.config.lease_failures_before_lost:
            lease.ended = SessionState.LOST
            return Health(
                status=HealthStatus.GONE, raw_state="chats_failing", detail=detail
            )
        return Health(
            status=HealthStatus.DEGRADED, raw_state="chats_failing", detail=detail
        )

    # -- leases: the provider keeps their state ------------------------------------

    def _lease(self, session: Session) -> _Lease:
        lease = self._leases.get(session.id)
        if lease is None:
            # A lease made elsewhere (another process, a restored store).
            deadline = session.expires_at.timestamp() if session.expires_at else None
            lease = self._leases[session.id] = _Lease(deadline=deadline)
        return lease

    def _prune_leases(self) -> None:
        # A lease past its deadline is refused by the deadline alone.
        now = self.clock()
        for tether_id, lease in list(self._leases.items()):
            if lease.deadline is not None and lease.deadline <= now:
                del self._leases[tether_id]

    def _ensure_lease_usable(self, session: Session) -> None:
        """
        Refuse a lease that ended, before anything is sent.

        The object a caller holds may predate the end (a lease has no remote
        state that would refuse a chat), so the provider's own record decides.
        """
        lease = self._leases.get(session.id)
        state = lease.ended if lease is not None else None
        deadline = (
            session.expires_at.timestamp()
            if session.expires_at is not None
            else (lease.deadline if lease is not None else None)
        )
        if state is None and deadline is not None and self.clock() >= deadline:
            state = SessionState.EXPIRED
        if state is None:
            return
        cls = _ENDED.get(state, SessionClosedError)
        msg = f"session {session.id} ({self.name}) is {state.value}"
        if lease is not None and state is SessionState.LOST and lease.last_error:
            msg = f"{msg}: {lease.last_error}"
        raise cls(msg, session_id=session.id, provider=self.name, state=state.value)

    def _ensure_not_closed(self, session: Session) -> None:
        # A Session object from before close() still says ACTIVE; the gateway
        # would take its session_id as-is (no ownership check).
        if session.remote_id is not None and session.remote_id.lower() in self._closed:
            msg = f"session {session.id} ({self.name}) is closed"
            raise SessionClosedError(
                msg,
                session_id=session.id,
                provider=self.name,
                state=SessionState.CLOSED.value,
            )

    def _chat_outcome(self, session: Session, error: ProviderError | None) -> None:
        lease = self._lease(session)
        if error is None:
            lease.failures, lease.last_error = 0, None
        elif _pool_failure(error):
            lease.failures += 1
            lease.last_error = str(error)
            logger.info(
                "tether.morpheus.lease_chat_failed",
                provider=self.name,
                session_id=session.id,
                failures=lease.failures,
                error=type(error).__name__,
            )

    async def _key_session(self, *, session_id: str | None) -> PingResult:
        """
        Which session the key holds now (``pingsession``: one inference).

        Raises:
            ProviderUnavailableError: The gateway could not say.
        """
        result = await self.api.ping_session(session_id=session_id)
        if result.status in (PingStatus.ERROR, PingStatus.UNKNOWN):
            msg = (
                f"{self.name}: the gateway could not say which session the key "
                f"holds: {result.message or result.raw_status}"
            )
            raise ProviderUnavailableError(
                msg, provider=self.name, operation="ping", session_id=session_id
            )
        return result

    async def find(self, tether_id: str) -> RemoteSession | None:
        """
        The session a create for *tether_id* opened, when its answer was lost.

        The gateway keeps no tag of tether's: the key's current session (as
        ``pingsession`` tells) is adopted when it is alive and is no other
        session this provider opened or closed. Only creates this provider
        sent can be found (what they asked for is not on the gateway).
        """
        attempt = self._attempts.get(tether_id)
        if attempt is None:
            return None
        result = await self._key_session(session_id=tether_id)
        held = (result.session_id or "").lower()
        if result.status is not PingStatus.ALIVE or not held:
            return None
        if attempt.remote_id is not None:
            if held != attempt.remote_id.lower():
                return None
        elif held in self._closed or any(
            a.remote_id is not None and a.remote_id.lower() == held
            for t, a in self._attempts.items()
            if t != tether_id
        ):
            return None
        attempt.remote_id = result.session_id
        logger.info(
            "tether.morpheus.session_found",
            provider=self.name,
            session_id=tether_id,
            remote_id=result.session_id,
        )
        return RemoteSession(
            id=str(result.session_id),
            raw_state="active",
            tether_id=tether_id,
            # Opened after the attempt started: this deadline is not later
            # than the gateway's.
            expires_at=datetime.fromtimestamp(attempt.started + attempt.duration, UTC),
            data=attempt.data,
        )

    async def close(self, session: Session) -> None:
        """
        Close *session* on the gateway, if the key still holds it.

        ``/session/closesession`` names no session: it closes whatever the
        key holds now, which after another client's create is not ours. So
        the key's session is checked first (``pingsession``, one inference);
        when it is another one, or none, nothing is closed, the event
        ``tether.morpheus.close_skipped`` is logged and
        :class:`~tether.exceptions.RemoteNotFoundError` says it is already
        gone (the manager records it closed).
        """
        if session.data.get("mode") == "lease":
            lease = self._lease(session)
            if lease.ended is None:
                lease.ended = SessionState.CLOSED
            self._prune_leases()
            return
        if session.remote_id is None:
            return
        mine = session.remote_id.lower()
        if mine in self._closed:
            return  # closed (or found gone) by this provider already
        held = await self._key_session(session_id=session.id)
        if (
            held.status is not PingStatus.ALIVE
            or (held.session_id or "").lower() != mine
        ):
            self._closed.add(mine)
            logger.info(
                "tether.morpheus.close_skipped",
                provider=self.name,
                session_id=session.id,
                remote_id=session.remote_id,
                key_session=held.session_id,
                key_status=held.raw_status or held.status.value,
            )
            if held.session_id is not None and held.session_id.lower() == mine:
                reason = f"the gateway reports it {held.status.value}"
            elif held.session_id is None:
                reason = "the API key holds no session"
            else:
                reason = "the API key now holds another session"
            msg = f"{self.name}: session {session.id} is already gone ({reason}); not closing"
            raise RemoteNotFoundError(
                msg,
                provider=self.name,
                operation="close",
                session_id=session.id,
                code="close_skipped",
            )
        try:
            result = await self.api.close_session(session_id=session.id)
        except RemoteNotFoundError:
            self._closed.add(mine)
            return
        self._closed.add(mine)
        if result.session_id is not None and result.session_id.lower() != mine:
            # Another client's create between the check and the close.
            logger.warning(
                "tether.morpheus.close_mismatched",
                provider=self.name,
                session_id=session.id,
                remote_id=session.remote_id,
                closed=result.session_id,
            )
        logger.info(
            "tether.morpheus.session_closed",
            provider=self.name,
            session_id=session.id,
            message=result.message,
        )

    # -- inference ---------------------------------------------------------------------

    @overload
    async def chat(
        self,
        session: Session,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatCompletion: ...

    @overload
    async def chat(
        self,
        session: Session,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatStream: ...

    async def chat(
        self,
        session: Session,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatCompletion | ChatStream:
        """
        A chat completion on *session* (OpenAI-compatible).

        On a gateway session the request names it (``session_id``), so the
        gateway skips its own session logic and never switches models under
        you; on a lease it names the model.

        Args:
            session: A live Morpheus session.
            messages: OpenAI messages.
            stream: ``True`` for a :class:`~tether_morpheus.ChatStream` of chunks.
            tools: OpenAI tool definitions.
            tool_choice: ``"auto"``, ``"none"`` or a named function.
            **options: ``temperature``, ``top_p``, ``n``, ``stop``, ``max_tokens``,
                ``presence_penalty``, ``frequency_penalty``.

        On a lease, each outcome is recorded: failed chats (the pool failing
        the model) make the lease's next ping ``DEGRADED``, then ``GONE``
        (``lease_failures_before_lost``), so failover can move it.

        Raises:
            SessionEndedError: The session is closed, expired or lost (for a
                lease, as this provider knows it, whatever the object says).
            RemoteNotFoundError: The node no longer serves the session
                (``code`` ``session_expired`` or ``session_not_found``): in
                sessions mode ping it; on a lease retry after the gateway's
                cleanup, or fail over to another model.
            ProviderError: Any other failure, in-band SSE errors included.
        """
        session.ensure_usable()
        if session.provider != self.name:
            msg = f"{self.name}: session {session.id} belongs to {session.provider!r}"
            raise InvalidParameterError(msg, field="session", provider=self.name)
        kwargs: dict[str, Any] = {"tools": tools, "tool_choice": tool_choice, **options}
        lease = session.data.get("mode") == "lease"
        if lease:
            self._ensure_lease_usable(session)
            kwargs["model"] = session.data.get("model")
        else:
            self._ensure_not_closed(session)
            kwargs["session_id"] = session.remote_id
        try:
            if stream:
                if lease:
                    kwargs["on_outcome"] = lambda e: self._chat_outcome(session, e)
                return await self.api.stream_chat_completions(messages, **kwargs)
            reply = await self.api.chat_completions(messages, **kwargs)
        except ProviderError as exc:
            exc.session_id = session.id
            if lease:
                self._chat_outcome(session, exc)
            raise
        if lease:
            self._chat_outcome(session, None)
        return reply


def _find_model(models: Sequence[Model], wanted: str) -> Model | None:
    lowered = wanted.lower()
    for m in models:
        if m.name == wanted or (
            wanted.startswith("0x") and m.blockchain_id.lower() == lowered
        ):
            return m
    return None
