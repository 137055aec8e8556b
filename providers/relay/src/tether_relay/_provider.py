# Copyright 2026 The tether developers. MIT license.
"""
The ``relay`` provider: Edgegap Distributed Relay sessions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anyio

from tether import Health, HealthStatus, Session
from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    Operation,
    Provider,
    ProviderConfig,
    RemoteSession,
    get_logger,
)
from tether.exceptions import (
    ConflictError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    RequestRejectedError,
    TransientProviderError,
)
from tether_relay import _params
from tether_relay._config import RelayConfig
from tether_relay._handle import RelayHandle, SyncRelayHandle
from tether_relay._models import (
    RelayCredentials,
    RelayUser,
    credentials_from,
    public_data,
    user_from,
    users_from,
)


if TYPE_CHECKING:
    import httpx


logger = get_logger("tether.relay")

_SESSIONS = "/v1/relays/sessions"
_AUTHORIZE = "/v1/relays/sessions:authorize-user"
_REVOKE = "/v1/relays/sessions:revoke-user"

Readiness = Literal["ready", "error", "pending"]


def readiness(payload: Mapping[str, Any]) -> Readiness:
    """
    Whether a ``RelaySession`` body is usable, failed, or still pending.

    Decided on ``error`` and ``ready`` only: ``status`` is free text with no
    enum (``Initializing``, ``READY``, ``Linked`` have all been seen).
    """
    error = payload.get("error")
    if isinstance(error, str) and error.strip():
        return "error"
    if payload.get("ready") is True:
        return "ready"
    return "pending"


class RelayProvider(Provider[RelayConfig]):
    """
    Edgegap Distributed Relay sessions as tether sessions.

    A relay session has no expiry on the service and is billed while it
    exists: tether's ``lifetime=`` (kept by the manager) is what deletes it.
    Create waits until the relay is ready. Players are added and removed with
    ``manager.update(session, authorize=[ip, ...], revoke=[ip, ...])``; their
    tokens come from :meth:`credentials` or :meth:`authorize_user`.
    """

    config_class: ClassVar[type[ProviderConfig]] = RelayConfig
    #: The session's operations, and its handles (``manager.session(RelayProvider)``).
    operations: ClassVar[Mapping[str, Operation]] = {
        "authorize_user": Operation(idempotent=True),
        "revoke_user": Operation(idempotent=True),
        "credentials": Operation(idempotent=True),
    }
    handle_class: ClassVar[type[RelayHandle]] = RelayHandle
    sync_handle_class: ClassVar[type[SyncRelayHandle]] = SyncRelayHandle
    search_filters: ClassVar[frozenset[str]] = frozenset({"user_ip"})
    capabilities: ClassVar[Capabilities] = Capabilities(
        update=True,
        # The service has no lifetime to extend; tether's own deadline is the
        # only one, and it lives in the manager.
        renew=False,
        get=True,
        list=True,
        # The service keeps no client tag on a relay session.
        find=False,
        server_ttl=False,
        default_lifetime=None,
        ping_interval=30.0,
    )

    @classmethod
    def client_options(cls, config: RelayConfig) -> ClientOptions:
        return ClientOptions(
            base_url=config.base_url,
            headers={
                "Authorization": f"token {config.api_token.reveal()}",
                "Accept": "application/json",
            },
            timeout=config.timeout,
        )

    # -- parameters ------------------------------------------------------------

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate ``users`` (required), ``filters`` and ``webhook_url`` locally.

        ``users`` is a list of IP addresses (strings, or ``{"ip": ...}``
        objects as the service spells them).
        """
        return _params.parse_create(params, allow_private=self.config.allow_private_ips)

    def parse_update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate ``authorize`` and ``revoke``: lists of IP addresses.
        """
        return _params.parse_update(
            changes, allow_private=self.config.allow_private_ips
        )

    # -- the lifecycle -----------------------------------------------------------

    async def create(self, request: CreateRequest) -> RemoteSession:
        """
        Create a relay session and wait (up to ``ready_timeout``) until it is ready.

        If the session reports an error, does not become ready in time, or the
        wait is cancelled, the session is deleted (shielded from cancellation,
        bounded by ``cleanup_timeout``) before the error propagates, so nothing
        is left billing.

        Raises:
            RequestRejectedError: The service rejected the input, or the session
                failed with an ``error`` (e.g. a user IP is not public).
            ProviderUnavailableError: The session was not ready in time.
            OutcomeUnknownError: The create was sent but its answer was lost
                (no answer, a gateway's 502 or 504, or a 2xx that cannot be
                read), or the failed session could not be deleted (its id is
                the error's ``session_id``). A lost answer is raised only once
                no session of the account is still initializing (or after
                ``ready_timeout``), so that the manager finds the session in
                :meth:`list` by its users instead of creating a second one.
        """
        params = request.params
        body: dict[str, Any] = {"users": [{"ip": ip} for ip in params["users"]]}
        if params.get("filters"):
            body["filters"] = [dict(f) for f in params["filters"]]
        if params.get("webhook_url"):
            body["webhook_url"] = params["webhook_url"]
        log = logger.bind(provider=self.name, session_id=request.tether_id)
        try:
            response = await self.request(
                "POST", _SESSIONS, operation="create", json=body
            )
            payload = self._session_payload(response, operation="create")
        except OutcomeUnknownError:
            # The service may have made it. A relay shows its users only once
            # it is ready, and the manager looks for it in the list by them.
            log.warning("tether.relay.create_outcome_unknown")
            await self._settle_pending()
            raise
        remote_id: str = payload["session_id"]
        log = log.bind(remote_id=remote_id)
        log.info("tether.relay.session_created", status=payload.get("status"))
        try:
            payload = await self._wait_ready(remote_id, payload)
        except BaseException as exc:
            # Cancellation included: a session that never became usable must
            # not be left billing.
            deleted = await self._discard(remote_id, log)
            if not deleted and isinstance(exc, Exception):
                msg = (
                    f"relay session {remote_id} failed to become ready and could "
                    "not be deleted; it may still exist"
                )
                raise OutcomeUnknownError(
                    msg, provider=self.name, operation="create", session_id=remote_id
                ) from exc
            raise
        log.info("tether.relay.session_ready", status=payload.get("status"))
        return self._remote(payload)

    async def ping(self, session: Session) -> Health:
        """
        ``GET`` the session: ready means alive; an ``error`` or not ready, degraded.
        """
        remote_id = self._remote_id(session, operation="ping")
        response = await self.request(
            "GET",
            f"{_SESSIONS}/{remote_id}",
            operation="ping",
            session_id=remote_id,
            ok=(404,),
        )
        if response.status_code == 404:  # noqa: PLR2004
            return Health(status=HealthStatus.GONE, detail=self._message(response))
        payload = self._session_payload(response, operation="ping")
        status = payload.get("status")
        raw = status if isinstance(status, str) else None
        state = readiness(payload)
        data = public_data(payload)
        if state == "ready":
            return Health(status=HealthStatus.ALIVE, raw_state=raw, data=data)
        detail = (
            f"relay session failed: {payload['error']}"
            if state == "error"
            else "relay session is not ready"
        )
        return Health(
            status=HealthStatus.DEGRADED, raw_state=raw, detail=detail, data=data
        )

    async def close(self, session: Session) -> None:
        """
        ``DELETE`` the session (204); already gone (404) is success.
        """
        if session.remote_id is None:
            return
        await self._delete(session.remote_id)
        logger.info(
            "tether.relay.session_deleted",
            provider=self.name,
            session_id=session.id,
            remote_id=session.remote_id,
        )

    async def get(self, session: Session) -> RemoteSession | None:
        """
        The session as the service has it, or ``None`` if it does not exist.
        """
        remote_id = self._remote_id(session, operation="get")
        payload = await self._fetch(remote_id, operation="get", missing_ok=True)
        return None if payload is None else self._remote(payload)

    async def list(self) -> Sequence[RemoteSession]:
        """
        Every relay session of the account, following ``pagination``.

        The spec declares no ``page`` parameter for this path, although the
        response is paginated; further pages are asked for with ``?page=N``, as
        on Edgegap's other list endpoints.
        """
        found: dict[str, RemoteSession] = {}
        page = 1
        for _ in range(self.config.max_list_pages):
            response = await self.request(
                "GET",
                _SESSIONS,
                operation="list",
                params={"page": page} if page > 1 else None,
            )
            body = self.json(response, operation="list")
            sessions = body.get("sessions") if isinstance(body, Mapping) else None
            if not isinstance(sessions, list):
                raise self._malformed(response, operation="list")
            for item in sessions:
                if isinstance(item, Mapping) and isinstance(
                    item.get("session_id"), str
                ):
                    found.setdefault(item["session_id"], self._remote(item))
            pagination = body.get("pagination")
            if (
                not isinstance(pagination, Mapping)
                or pagination.get("has_next") is not True
            ):
                break
            following = pagination.get("next_page_number")
            if not isinstance(following, int) or following <= page:
                break
            page = following
        return list(found.values())

    def parse_search(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """
        ``user_ip``: the sessions one player is authorized on.
        """
        parsed = super().parse_search(filters)
        if "user_ip" in parsed:
            parsed["user_ip"] = _params.parse_ip(
                parsed["user_ip"], field="user_ip", allow_private=True
            )
        return parsed

    async def search(
        self, labels: Mapping[str, str], filters: Mapping[str, Any]
    ) -> Sequence[RemoteSession]:
        """
        The listed sessions (up to ``max_list_pages``) that ``user_ip`` is
        authorized on. Edgegap stores no labels: any *labels* match nothing.
        """
        ip = filters.get("user_ip")
        return [
            remote
            for remote in await self.list()
            if not labels and (ip is None or ip in remote.data.get("users", ()))
        ]

    async def update(
        self, session: Session, changes: Mapping[str, Any]
    ) -> RemoteSession:
        """
        Authorize and revoke users: ``authorize=[ip, ...]``, ``revoke=[ip, ...]``.

        Idempotent, so a retried update is safe: an IP already authorized is
        skipped (a 409 counts as done), and an IP not authorized needs no
        revoke. Revoking looks each user's token up with a ``GET``.
        """
        remote_id = self._remote_id(session, operation="update")
        payload = await self._fetch(remote_id, operation="update")
        tokens = {u.ip: u.authorization_token for u in users_from(payload)}
        for ip in changes.get("authorize", ()):
            if ip in tokens:
                continue
            try:
                await self._authorize(remote_id, ip)
            except ConflictError:
                logger.info(
                    "tether.relay.user_already_authorized",
                    provider=self.name,
                    remote_id=remote_id,
                    ip=ip,
                )
        for ip in changes.get("revoke", ()):
            token = tokens.get(ip)
            if token is not None:
                await self._revoke(remote_id, token)
        payload = await self._fetch(remote_id, operation="update")
        return self._remote(payload)

    # -- relay-specific operations ---------------------------------------------

    async def credentials(self, session: Session) -> RelayCredentials:
        """
        The session's tokens and relay endpoint, fetched now (never stored).

        Raises:
            SessionEndedError: The session is closed, expired or lost.
            RemoteNotFoundError: The service no longer has it.
        """
        session.ensure_usable()
        remote_id = self._remote_id(session, operation="credentials")
        payload = await self._fetch(remote_id, operation="credentials")
        return credentials_from(remote_id, payload)

    async def authorize_user(self, session: Session, ip: str) -> RelayUser:
        """
        Authorize one more player and return the player's token.

        Already authorized is not an error: the existing token is returned.
        The manager's record of the session's users is refreshed at its next
        ping; use ``manager.update(session, authorize=[ip])`` to update it now.

        Raises:
            InvalidParameterError: *ip* is not a public IP address.
            SessionEndedError: The session is closed, expired or lost.
            RemoteNotFoundError: The service no longer has the session.
            RequestRejectedError: The service refused (e.g. not ready yet).
        """
        session.ensure_usable()
        address = _params.parse_ip(
            ip, field="ip", allow_private=self.config.allow_private_ips
        )
        remote_id = self._remote_id(session, operation="authorize_user")
        try:
            user = await self._authorize(remote_id, address)
        except RequestRejectedError as exc:
            # The spec declares no 404 here: the service refuses an unknown
            # session with a 400. Tell that apart by reading the session.
            if await self._fetch(
                remote_id, operation="authorize_user", missing_ok=True
            ):
                raise
            msg = f"relay session {remote_id} does not exist (any more)"
            raise RemoteNotFoundError(
                msg,
                provider=self.name,
                operation="authorize_user",
                session_id=remote_id,
                status_code=exc.status_code,
                body=exc.body,
            ) from exc
        except ConflictError:
            user = None
            payload = await self._fetch(remote_id, operation="authorize_user")
            existing = credentials_from(remote_id, payload)
            if existing.token_for(address) is None:
                raise
            for candidate in existing.users:
                if candidate.ip == address:
                    user = candidate
        if user is None or user.authorization_token is None:
            # The answer lacked the new user's token: read it back.
            payload = await self._fetch(remote_id, operation="authorize_user")
            for candidate in users_from(payload):
                if candidate.ip == address:
                    return candidate
            return RelayUser(ip=address, authorization_token=None)
        return user

    async def revoke_user(self, session: Session, ip: str) -> bool:
        """
        Remove one player; return whether the IP was authorized.

        The service revokes by the user's token, which is looked up with a
        ``GET`` first.

        Raises:
            InvalidParameterError: *ip* is not an IP address.
            SessionEndedError: The session is closed, expired or lost.
        """
        session.ensure_usable()
        address = _params.parse_ip(ip, field="ip", allow_private=True)
        remote_id = self._remote_id(session, operation="revoke_user")
        payload = await self._fetch(remote_id, operation="revoke_user")
        token = credentials_from(remote_id, payload).token_for(address)
        if token is None:
            return False
        await self._revoke(remote_id, token)
        return True

    # -- helpers ---------------------------------------------------------------

    async def _wait_ready(
        self, remote_id: str, payload: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        config: RelayConfig = self.config
        deadline = anyio.current_time() + config.ready_timeout
        delay = config.poll_initial
        while True:
            state = readiness(payload)
            if state == "ready":
                return payload
            if state == "error":
                msg = f"relay session {remote_id} failed: {payload['error']}"
                raise RequestRejectedError(
                    msg,
                    provider=self.name,
                    operation="create",
                    session_id=remote_id,
                    body=dict(payload),
                )
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                msg = (
                    f"relay session {remote_id} was not ready after "
                    f"{config.ready_timeout} seconds"
                )
                raise ProviderUnavailableError(
                    msg, provider=self.name, operation="create", session_id=remote_id
                )
            await anyio.sleep(min(delay, remaining))
            delay = min(max(delay, 0.001) * config.poll_multiplier, config.poll_max)
            try:
                payload = await self._fetch(remote_id, operation="create")
            except TransientProviderError as exc:
                # Polling is reading, not retrying a change: a failed poll is
                # worth another one until the deadline.
                logger.info(
                    "tether.relay.poll_failed",
                    provider=self.name,
                    remote_id=remote_id,
                    error=type(exc).__name__,
                )

    async def _settle_pending(self) -> None:
        """
        Wait, up to ``ready_timeout``, until no listed session is initializing.

        An initializing relay lists no users, so it cannot be matched to the
        create that made it until it is ready (or failed).
        """
        config: RelayConfig = self.config
        delay = config.poll_initial
        with anyio.move_on_after(config.ready_timeout):
            while True:
                try:
                    listed = await self.list()
                except TransientProviderError:
                    listed = None
                if listed is not None and not any(
                    r.data.get("ready") is not True and not r.data.get("error")
                    for r in listed
                ):
                    return
                await anyio.sleep(delay)
                delay = min(max(delay, 0.001) * config.poll_multiplier, config.poll_max)

    async def _discard(self, remote_id: str, log: Any) -> bool:
        """
        Delete a session that never became usable; return whether it is gone.
        """
        deleted = False
        with anyio.move_on_after(self.config.cleanup_timeout, shield=True):
            try:
                await self._delete(remote_id)
            except ProviderError as exc:
                log.warning("tether.relay.cleanup_failed", error=type(exc).__name__)
            else:
                deleted = True
                log.info("tether.relay.session_discarded")
        if not deleted:
            log.warning("tether.relay.session_leaked")
        return deleted

    async def _delete(self, remote_id: str) -> None:
        await self.request(
            "DELETE",
            f"{_SESSIONS}/{remote_id}",
            operation="close",
            session_id=remote_id,
            ok=(404,),
        )

    async def _fetch(
        self, remote_id: str, *, operation: str, missing_ok: bool = False
    ) -> Any:
        response = await self.request(
            "GET",
            f"{_SESSIONS}/{remote_id}",
            operation=operation,
            session_id=remote_id,
            ok=(404,) if missing_ok else (),
        )
        if response.status_code == 404:  # noqa: PLR2004
            return None
        return self._session_payload(response, operation=operation)

    async def _authorize(self, remote_id: str, ip: str) -> RelayUser | None:
        response = await self.request(
            "POST",
            _AUTHORIZE,
            operation="authorize_user",
            session_id=remote_id,
            json={"session_id": remote_id, "user_ip": ip},
        )
        body = self.json(response, operation="authorize_user")
        user = (
            user_from(body.get("session_user")) if isinstance(body, Mapping) else None
        )
        logger.info(
            "tether.relay.user_authorized",
            provider=self.name,
            remote_id=remote_id,
            ip=ip,
        )
        return user

    async def _revoke(self, remote_id: str, token: int) -> None:
        await self.request(
            "POST",
            _REVOKE,
            operation="revoke_user",
            session_id=remote_id,
            # 404: that token is no longer on the session, which is the goal.
            ok=(404,),
            json={"session_id": remote_id, "authorization_token": token},
        )
        logger.info(
            "tether.relay.user_revoked", provider=self.name, remote_id=remote_id
        )

    def _session_payload(self, response: httpx.Response, *, operation: str) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping) or not isinstance(body.get("session_id"), str):
            raise self._malformed(response, operation=operation)
        return body

    def _malformed(self, response: httpx.Response, *, operation: str) -> ProviderError:
        msg = f"{self.name} answered {response.status_code} with an unexpected body"
        # A create the service took (2xx) may have made a session.
        cls = OutcomeUnknownError if operation == "create" else ProviderUnavailableError
        return cls(
            msg,
            provider=self.name,
            operation=operation,
            status_code=response.status_code,
            body=response.text[:500],
        )

    def matches(self, session: Session, remote: RemoteSession) -> bool:
        """
        An untagged relay session is *session*'s if it has exactly its users.

        Relay sessions keep no client tag, so a create whose answer was lost
        is recognised in the list by its users' IPs (the manager adopts only
        when exactly one unclaimed session matches).
        """
        wanted = session.params.get("users")
        users = remote.data.get("users")
        if not isinstance(wanted, list) or not isinstance(users, list):
            return False
        return sorted(map(str, wanted)) == sorted(map(str, users))

    def _remote(self, payload: Mapping[str, Any]) -> RemoteSession:
        status = payload.get("status")
        return RemoteSession(
            id=payload["session_id"],
            raw_state=status if isinstance(status, str) else None,
            data=public_data(payload),
        )

    def _remote_id(self, session: Session, *, operation: str) -> str:
        if session.remote_id is None:
            msg = f"session {session.id} has no relay session on the service"
            raise RemoteNotFoundError(
                msg, provider=self.name, operation=operation, session_id=session.id
            )
        return session.remote_id

    @staticmethod
    def _message(response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            return None
        message = body.get("message") if isinstance(body, Mapping) else None
        return message if isinstance(message, str) else None

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
        Read Edgegap's ``{"message": ...}`` envelope, then map by status.

        A 502 or 504 to a create is an
        :class:`~tether.exceptions.OutcomeUnknownError`: a gateway gave up
        waiting, and the service may have made the session anyway.
        """
        found = self._message(response)
        if message is None and found:
            message = (
                f"{self.name} answered {response.status_code} to {operation}: {found}"
            )
        error = super().error_from_response(
            response,
            operation=operation,
            session_id=session_id,
            message=message,
            code=code,
        )
        if operation == "create" and response.status_code in (502, 504):
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
