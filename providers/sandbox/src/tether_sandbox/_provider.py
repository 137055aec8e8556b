"""
The sandbox provider: InstaVM sandbox VM sessions.
"""

from __future__ import annotations

import email.utils
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

import anyio
import httpx

from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    Operation,
    RemoteSession,
    get_logger,
)
from tether.exceptions import (
    ConflictError,
    InvalidParameterError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
)
from tether_sandbox import _params
from tether_sandbox._compat import Health, HealthStatus, Session, SessionState
from tether_sandbox._config import SandboxConfig
from tether_sandbox._handle import SandboxHandle, SyncSandboxHandle
from tether_sandbox._session_work import SessionWork
from tether_sandbox._types import Execution, ExecutionResult, SandboxStatus


if TYPE_CHECKING:
    import builtins


__all__ = ["SandboxProvider"]

logger = get_logger("tether.sandbox")

_LANGUAGES: Final = ("python", "bash")
# Seconds of slack when telling a VM that reached its lifetime from one that
# was killed early (uptime is rounded by the service).
_EXPIRY_SLACK: Final = 1.0
_LIST_STATES: Final = {
    "created": SessionState.ACTIVE,
    "active": SessionState.ACTIVE,
    "running": SessionState.ACTIVE,
    "killed": SessionState.CLOSED,
    "terminated": SessionState.CLOSED,
    "expired": SessionState.EXPIRED,
}


def _server_now(response: httpx.Response) -> datetime:
    """
    "Now" as the service sees it: its ``Date`` header, else our clock.

    Deadlines are computed from the service's relative ``expires_in_seconds``;
    anchoring them to the service's clock keeps them right even when ours is
    off (and lets tests drive both with one manual clock).
    """
    date = response.headers.get("date")
    if date:
        try:
            when = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _naive_utc(value: object) -> datetime | None:
    """
    Parse the service's timestamps: ISO, usually without an offset (UTC).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class SandboxProvider(SessionWork):
    """
    tether provider for InstaVM sandbox sessions (Firecracker microVMs).

    A session is created lazily: the service allocates a session id, and spawns
    its VM on the first :meth:`execute` (or at once when ``env`` is given). The
    VM lives ``vm_lifetime_seconds`` from its spawn and cannot be extended;
    after that the service silently boots a *new* VM under the same session id
    on the next execution, with all state lost. :meth:`ping` reports the change
    of VM (``vm_replaced`` in :attr:`tether.Health.data`).

    Create parameters: ``vm_lifetime_seconds`` (20..86400, default 300; or
    tether's ``lifetime=``), ``memory_mb`` (128..8192), ``vcpu_count`` (1, 2,
    4, 6 or 8; default 2), ``metadata`` (JSON mapping) and ``env`` (string
    mapping; spawns a billed VM at once).

    Inside a session, besides code execution: :meth:`session_info`,
    :meth:`usage`, :meth:`app_url`, :meth:`upload`, :meth:`download`,
    :meth:`egress` and :meth:`set_egress`.

    Do not instantiate directly: the manager builds it from :class:`SandboxConfig`.
    """

    #: The session's operations, and its handle (``manager.session(SandboxProvider)``).
    operations: ClassVar[Mapping[str, Operation]] = {
        "execute": Operation(idempotent=False),
        "execute_async": Operation(idempotent=False),
        "execution": Operation(idempotent=True),
        "wait": Operation(idempotent=True),
        # Reads, an overwrite of one file, and a whole-policy replacement:
        # each may be repeated when its answer was lost.
        "session_info": Operation(idempotent=True),
        "usage": Operation(idempotent=True),
        "app_url": Operation(idempotent=True),
        "upload": Operation(idempotent=True),
        "download": Operation(idempotent=True),
        "egress": Operation(idempotent=True),
        "set_egress": Operation(idempotent=True),
    }
    handle_class: ClassVar[type[SandboxHandle]] = SandboxHandle
    sync_handle_class: ClassVar[type[SyncSandboxHandle]] = SyncSandboxHandle
    #: Environment values are secrets: the stored record keeps only their names.
    secret_params: ClassVar[frozenset[str]] = frozenset({"env"})
    search_filters: ClassVar[frozenset[str]] = frozenset({"metadata"})
    capabilities: ClassVar[Capabilities] = Capabilities(
        update=False,
        renew=False,
        get=True,
        list=True,
        find=True,
        server_ttl=True,
        default_lifetime=float(_params.DEFAULT_LIFETIME),
        min_lifetime=float(_params.MIN_LIFETIME),
        max_lifetime=float(_params.MAX_LIFETIME),
        ping_interval=30.0,
    )
    config_class: ClassVar[type[SandboxConfig]] = SandboxConfig

    @classmethod
    def client_options(cls, config: SandboxConfig) -> ClientOptions:
        return ClientOptions(
            base_url=config.base_url,
            headers={
                "X-API-Key": config.api_key.reveal(),
                "Accept": "application/json",
            },
            timeout=config.timeout,
        )

    # -- parameters ----------------------------------------------------------

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return _params.parse_create(params)

    def parse_update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        # Nothing about a session can be changed after create (env included:
        # it is only accepted by the create call).
        raise self.not_supported("update")

    def lifetime_for(
        self, lifetime: float | None, params: Mapping[str, Any]
    ) -> float | None:
        """
        Map tether's ``lifetime=`` onto ``vm_lifetime_seconds``.

        Either may be given; both only when they agree. Without either the
        service's default (300 s) applies. The lifetime counts from the VM's
        spawn, which is the first execution unless ``env`` was given.
        """
        own = params.get("vm_lifetime_seconds")
        if lifetime is None:
            return float(own if own is not None else _params.DEFAULT_LIFETIME)
        seconds = _params.check_lifetime("lifetime", lifetime)
        if own is not None and int(own) != seconds:
            msg = (
                f"sandbox: lifetime={lifetime} and vm_lifetime_seconds={own} disagree; "
                "give one of them"
            )
            raise InvalidParameterError(
                msg,
                field="lifetime",
                value=lifetime,
                allowed=f"{own} (the vm_lifetime_seconds given) or leave it out",
                provider=self.name,
            )
        return float(seconds)

    # -- errors --------------------------------------------------------------

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
        Read FastAPI's ``detail`` (a string, or a list of validation errors).
        """
        detail: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, Mapping):
            detail = body.get("detail")
        status = response.status_code
        if isinstance(detail, str):
            text = f"sandbox answered {status} to {operation}: {detail}"
        elif isinstance(detail, list) and detail:
            parts = []
            for item in detail[:5]:
                if isinstance(item, Mapping):
                    loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                    parts.append(f"{loc}: {item.get('msg')}")
            text = f"sandbox answered {status} to {operation}: {'; '.join(parts)}"
            first = detail[0]
            code = code or (first.get("type") if isinstance(first, Mapping) else None)
        else:
            text = message or f"sandbox answered {status} to {operation}"
        error = super().error_from_response(
            response,
            operation=operation,
            session_id=session_id,
            message=text,
            code=code,
        )
        lowered = detail.lower() if isinstance(detail, str) else ""
        if status == 403 and ("limit" in lowered or "quota" in lowered):  # noqa: PLR2004
            # Tier limits come as 403 too; they are not a credential problem.
            return ConflictError(
                text,
                provider=self.name,
                operation=operation,
                session_id=session_id,
                status_code=status,
                body=error.body,
                code="tier_limit",
            )
        if status in (502, 504):
            # A gateway gave up waiting: the service may have done it anyway.
            return OutcomeUnknownError(
                text,
                provider=self.name,
                operation=operation,
                session_id=session_id,
                status_code=status,
                body=error.body,
                code=code,
            )
        return error

    # -- lifecycle -----------------------------------------------------------

    async def create(self, request: CreateRequest) -> RemoteSession:
        """
        ``POST /v1/sessions/session``, tagging ``metadata`` with tether's id.

        Create is not idempotent and has no idempotency key: the tag is how
        :meth:`find` recognises a session whose create outcome was unknown.
        """
        params = request.params
        if request.lifetime is not None:
            lifetime = _params.check_lifetime("lifetime", request.lifetime)
        else:
            lifetime = int(params.get("vm_lifetime_seconds", _params.DEFAULT_LIFETIME))
        metadata: dict[str, Any] = dict(params.get("metadata") or {})
        metadata[_params.TETHER_ID_KEY] = request.tether_id
        if request.labels:
            metadata[_params.TETHER_LABELS_KEY] = dict(request.labels)
        body: dict[str, Any] = {
            "api_key": self.config.api_key.reveal(),
            "vm_lifetime_seconds": lifetime,
            "metadata": metadata,
        }
        for name in ("memory_mb", "vcpu_count", "env"):
            if params.get(name) is not None:
                body[name] = params[name]
        response = await self.request(
            "POST", "/v1/sessions/session", operation="create", json=body
        )
        try:
            answer = response.json()
            session_id = str(uuid.UUID(str(answer["session_id"])))
        except (ValueError, KeyError, TypeError) as exc:
            # A 2xx means the service took it: the session may exist.
            msg = "sandbox accepted the create but its answer could not be read"
            raise OutcomeUnknownError(
                msg,
                provider=self.name,
                operation="create",
                status_code=response.status_code,
                body=response.text[:500],
            ) from exc
        spawned = params.get("env") is not None
        expires_at = (
            _server_now(response) + timedelta(seconds=lifetime) if spawned else None
        )
        logger.info(
            "tether.sandbox.session_created",
            session_id=session_id,
            tether_id=request.tether_id,
            vm_lifetime_seconds=lifetime,
            vm_spawned=spawned,
        )
        return RemoteSession(
            id=session_id,
            raw_state="created",
            state=SessionState.ACTIVE,
            expires_at=expires_at,
            tether_id=request.tether_id,
            # With env the service spawns the VM at once; without, at the first
            # execute. What is known now is kept, so a ping that finds the same
            # has nothing to write.
            data={
                "vm_id": None,
                "vm_assigned": spawned,
                "vm_lifetime_seconds": lifetime,
            },
        )

    async def status(self, session: Session) -> SandboxStatus:
        """
        ``GET /v1/sessions/status/{id}``, parsed; works on ended sessions too.
        """
        remote_id = self._remote_id(session)
        status, _ = await self._status(remote_id)
        return status

    async def _status(self, remote_id: str) -> tuple[SandboxStatus, httpx.Response]:
        response = await self.request(
            "GET",
            f"/v1/sessions/status/{remote_id}",
            operation="ping",
            session_id=remote_id,
            ok=(404,),
        )
        if response.status_code == 404:  # noqa: PLR2004
            return SandboxStatus(session_id=remote_id, exists=False), response
        body = self.json(response, operation="ping")
        if not isinstance(body, Mapping):
            msg = "sandbox answered the status with something other than an object"
            raise ProviderUnavailableError(
                msg,
                provider=self.name,
                operation="ping",
                session_id=remote_id,
                body=body,
            )
        vm_id = body.get("vm_id")
        vm_status = body.get("vm_status")
        return (
            SandboxStatus(
                session_id=str(body.get("session_id") or remote_id),
                exists=bool(body.get("exists")),
                vm_assigned=bool(body.get("vm_assigned")),
                vm_status=str(vm_status) if vm_status is not None else None,
                vm_id=str(vm_id) if vm_id is not None else None,
                vm_alive=bool(body.get("vm_alive")),
                uptime_seconds=_float(body.get("uptime_seconds")),
                expires_in_seconds=_float(body.get("expires_in_seconds")),
                raw=body,
            ),
            response,
        )

    async def ping(self, session: Session) -> Health:
        """
        Health from ``/v1/sessions/status``: alive when the session exists and
        has no VM yet or a live one.

        A VM that died at its lifetime is ``EXPIRED``; one killed early, or a
        session the service does not know, is ``GONE``. A new ``vm_id`` means
        the service replaced the VM and its state is lost: the health stays
        ``ALIVE`` but says so in ``detail`` and ``data`` (``vm_replaced``,
        ``previous_vm_id``), and ``tether.sandbox.vm_replaced`` is logged.
        """
        remote_id = self._remote_id(session)
        status, response = await self._status(remote_id)
        if not status.exists:
            return Health(
                status=HealthStatus.GONE,
                raw_state="not_found",
                detail="the service does not know this session",
            )
        raw = status.vm_status or ("created" if not status.vm_assigned else None)
        data: dict[str, Any] = {
            "vm_id": status.vm_id,
            "vm_assigned": status.vm_assigned,
        }
        if not status.alive:
            lifetime = _float(session.data.get("vm_lifetime_seconds"))
            expired = status.vm_status == "expired" or (
                status.vm_status != "killed"
                and lifetime is not None
                and status.uptime_seconds is not None
                and status.uptime_seconds >= lifetime - _EXPIRY_SLACK
            )
            return Health(
                status=HealthStatus.EXPIRED if expired else HealthStatus.GONE,
                raw_state=raw,
                detail="the VM reached its lifetime"
                if expired
                else "the VM was killed before its lifetime",
                data=data,
            )
        expires_at = None
        if status.expires_in_seconds is not None and status.vm_alive:
            expires_at = _server_now(response) + timedelta(
                seconds=status.expires_in_seconds
            )
        detail = None
        previous = session.data.get("vm_id")
        if (
            previous is not None
            and status.vm_id is not None
            and previous != status.vm_id
        ):
            count = int(session.data.get("vm_replacements", 0)) + 1
            data.update(
                vm_replaced=True, previous_vm_id=previous, vm_replacements=count
            )
            detail = (
                f"the VM was replaced ({previous} -> {status.vm_id}): its state "
                "(files, variables, installed packages) is lost"
            )
            logger.warning(
                "tether.sandbox.vm_replaced",
                session_id=session.id,
                remote_id=remote_id,
                previous_vm_id=previous,
                vm_id=status.vm_id,
                vm_replacements=count,
            )
        return Health(
            status=HealthStatus.ALIVE,
            raw_state=raw,
            expires_at=expires_at,
            detail=detail,
            data=data,
        )

    async def close(self, session: Session) -> None:
        """
        ``POST /kill``; 404 (no such session, or no VM assigned) is already gone.
        """
        remote_id = session.remote_id
        if remote_id is None:
            return
        response = await self.request(
            "POST",
            "/kill",
            operation="close",
            session_id=remote_id,
            ok=(404,),
            json={"session_id": remote_id},
        )
        logger.info(
            "tether.sandbox.session_killed",
            session_id=session.id,
            remote_id=remote_id,
            already_gone=response.status_code == 404,  # noqa: PLR2004
        )

    async def get(self, session: Session) -> RemoteSession | None:
        """
        The session as the status endpoint reports it; ``None`` when unknown.
        """
        remote_id = self._remote_id(session)
        status, response = await self._status(remote_id)
        if not status.exists:
            return None
        if status.alive:
            state = SessionState.ACTIVE
        elif status.vm_status == "killed":
            state = SessionState.CLOSED
        else:
            state = SessionState.EXPIRED
        expires_at = None
        if status.vm_alive and status.expires_in_seconds is not None:
            expires_at = _server_now(response) + timedelta(
                seconds=status.expires_in_seconds
            )
        return RemoteSession(
            id=remote_id,
            raw_state=status.vm_status or "created",
            state=state,
            expires_at=expires_at,
            data={"vm_id": status.vm_id, "vm_assigned": status.vm_assigned},
        )

    async def list(self) -> Sequence[RemoteSession]:
        """
        Every session of this API key (``GET /v1/sessions/sandboxes``, at most 1000).

        Sessions tether did not create have ``tether_id=None``.
        """
        return await self._sandboxes(None, limit=_params.MAX_LIST_LIMIT)

    async def find(self, tether_id: str) -> RemoteSession | None:
        """
        The session tagged with *tether_id* in its metadata, or ``None``.
        """
        found = await self._sandboxes({_params.TETHER_ID_KEY: tether_id}, limit=10)
        if not found:
            return None
        live = [s for s in found if s.state is SessionState.ACTIVE]
        return (live or found)[0]

    def parse_search(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """
        ``metadata``: a JSON object the sessions' metadata must contain.
        """
        parsed = super().parse_search(filters)
        if "metadata" in parsed:
            metadata = parsed["metadata"]
            if not isinstance(metadata, Mapping) or not all(
                isinstance(k, str) for k in metadata
            ):
                msg = f"metadata must be a mapping with string keys, not {metadata!r}"
                raise InvalidParameterError(
                    msg, field="metadata", value=metadata, provider=self.name
                )
            try:
                json.dumps(metadata)
            except (TypeError, ValueError):
                msg = "metadata must be JSON (strings, numbers, lists, mappings)"
                raise InvalidParameterError(
                    msg, field="metadata", provider=self.name
                ) from None
            parsed["metadata"] = dict(metadata)
        return parsed

    async def search(
        self, labels: Mapping[str, str], filters: Mapping[str, Any]
    ) -> Sequence[RemoteSession]:
        """
        The service filters: ``?metadata=`` with the labels (stored under
        tether's key at create) and the caller's ``metadata``, matched by
        containment; at most 1000 sessions.
        """
        metadata: dict[str, Any] = dict(filters.get("metadata") or {})
        if labels:
            metadata[_params.TETHER_LABELS_KEY] = dict(labels)
        return await self._sandboxes(metadata or None, limit=_params.MAX_LIST_LIMIT)

    async def _sandboxes(
        self, metadata: Mapping[str, Any] | None, *, limit: int
    ) -> Sequence[RemoteSession]:
        query: dict[str, Any] = {"limit": limit}
        if metadata is not None:
            query["metadata"] = json.dumps(metadata, separators=(",", ":"))
        response = await self.request(
            "GET", "/v1/sessions/sandboxes", operation="list", params=query
        )
        rows = self.json(response, operation="list")
        if not isinstance(rows, list):
            msg = "sandbox answered the list with something other than an array"
            raise ProviderUnavailableError(
                msg, provider=self.name, operation="list", body=rows
            )
        out: builtins.list[RemoteSession] = []
        for row in rows:
            if not isinstance(row, Mapping) or not row.get("sandbox_id"):
                continue
            meta = (
                row.get("metadata") if isinstance(row.get("metadata"), Mapping) else {}
            )
            raw_state = str(row.get("status") or "") or None
            state = _LIST_STATES.get((raw_state or "").lower(), SessionState.ACTIVE)
            tether_id = meta.get(_params.TETHER_ID_KEY) if meta else None
            labels = meta.get(_params.TETHER_LABELS_KEY) if meta else None
            end_at = _naive_utc(row.get("end_at"))
            out.append(
                RemoteSession(
                    id=str(row["sandbox_id"]),
                    raw_state=raw_state,
                    state=state,
                    expires_at=end_at if state is SessionState.ACTIVE else None,
                    tether_id=str(tether_id) if tether_id is not None else None,
                    labels=_labels(labels),
                    created_at=_naive_utc(row.get("started_at")),
                    data={
                        "template_id": row.get("template_id"),
                        "started_at": row.get("started_at"),
                        "end_at": row.get("end_at"),
                    },
                )
            )
        return out

    # -- work inside a session -----------------------------------------------

    def _remote_id(self, session: Session) -> str:
        if session.remote_id is None:
            msg = f"session {session.id} has no sandbox session id yet"
            raise InvalidParameterError(
                msg, field="session", value=session.id, provider=self.name
            )
        return session.remote_id

    def _command(
        self,
        session: Session,
        code: str | None,
        *,
        command: str | None,
        language: str,
        exec_timeout: int,
        vault_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        session.ensure_usable()
        remote_id = self._remote_id(session)
        if (code is None) == (command is None):
            msg = "sandbox: give exactly one of code= or command="
            raise InvalidParameterError(
                msg, field="code", allowed="code or command", provider=self.name
            )
        source = code if code is not None else command
        if not isinstance(source, str) or not source.strip():
            field = "code" if code is not None else "command"
            msg = f"sandbox: {field} must be a non-empty string"
            raise InvalidParameterError(
                msg, field=field, allowed="a non-empty string", provider=self.name
            )
        if not language:
            msg = "sandbox: language must be a non-empty string"
            raise InvalidParameterError(
                msg,
                field="language",
                value=language,
                allowed=", ".join(_LANGUAGES),
                provider=self.name,
            )
        seconds = _params.check_whole(
            "exec_timeout",
            exec_timeout,
            _params.MIN_EXEC_TIMEOUT,
            _params.MAX_EXEC_TIMEOUT,
        )
        body: dict[str, Any] = {
            "session_id": remote_id,
            "language": language,
            "timeout": seconds,
        }
        # Both keys are documented; the official SDK and every integration it
        # ships send the source as `command`, with `language`: so do we.
        body["command"] = source
        if vault_ids is not None:
            ids: Sequence[object] = vault_ids
            if isinstance(vault_ids, str) or not all(
                isinstance(v, str) and v for v in ids
            ):
                msg = "sandbox: vault_ids must be a list of vault ids"
                raise InvalidParameterError(
                    msg,
                    field="vault_ids",
                    allowed="a list of non-empty strings",
                    provider=self.name,
                )
            body["vault_ids"] = list(vault_ids)
        return body

    def _http_timeout(self, exec_timeout: int) -> httpx.Timeout:
        seconds = max(self.config.timeout, exec_timeout + self.config.execute_margin)
        return httpx.Timeout(seconds, connect=self.config.timeout)

    async def execute(
        self,
        session: Session,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
        vault_ids: Sequence[str] | None = None,
    ) -> ExecutionResult:
        """
        Run code in the session's VM (``POST /execute``) and return its output.

        The first execution spawns the VM, which starts its lifetime. A program
        that fails is not an error: read :attr:`ExecutionResult.stderr`.

        Args:
            session: A live sandbox session.
            code: Source code in *language*.
            command: A shell command instead of *code* (``language="bash"``).
            language: ``"python"`` (the service's default) or ``"bash"``.
            exec_timeout: The service's ``timeout`` for this execution, 1..600
                seconds: a request timeout, not the VM's lifetime. The HTTP
                timeout is raised to cover it.
            vault_ids: InstaVM vaults whose secrets the execution may use
                (the way to give it secrets without storing them in tether).

        Raises:
            SessionEndedError: The session is closed, expired or lost.
            InvalidParameterError: Bad arguments; nothing was sent.
            OutcomeUnknownError: No answer came; the code may have run.
        """
        body = self._command(
            session,
            code,
            command=command,
            language=language,
            exec_timeout=exec_timeout,
            vault_ids=vault_ids,
        )
        response = await self.request(
            "POST",
            "/execute",
            operation="execute",
            session_id=body["session_id"],
            json=body,
            timeout=self._http_timeout(body["timeout"]),
        )
        answer = self.json(response, operation="execute")
        return _result(answer if isinstance(answer, Mapping) else {})

    async def execute_async(
        self,
        session: Session,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
        vault_ids: Sequence[str] | None = None,
    ) -> str:
        """
        Start an execution (``POST /execute_async``) and return its task id.

        Poll it with :meth:`execution` or wait with :meth:`wait_execution`.
        Arguments as for :meth:`execute`.
        """
        body = self._command(
            session,
            code,
            command=command,
            language=language,
            exec_timeout=exec_timeout,
            vault_ids=vault_ids,
        )
        response = await self.request(
            "POST",
            "/execute_async",
            operation="execute_async",
            session_id=body["session_id"],
            json=body,
        )
        answer = self.json(response, operation="execute_async")
        task_id = answer.get("task_id") if isinstance(answer, Mapping) else None
        if not task_id:
            msg = "sandbox accepted the execution but sent no task_id"
            raise OutcomeUnknownError(
                msg,
                provider=self.name,
                operation="execute_async",
                session_id=body["session_id"],
                body=answer,
            )
        return str(task_id)

    async def execution(self, task_id: str) -> Execution:
        """
        One poll of an asynchronous execution (``GET /v1/executions/{task_id}``).
        """
        if not task_id or "/" in task_id:
            msg = "sandbox: task_id must be a non-empty id"
            raise InvalidParameterError(
                msg, field="task_id", value=task_id, provider=self.name
            )
        response = await self.request(
            "GET", f"/v1/executions/{task_id}", operation="execution"
        )
        answer = self.json(response, operation="execution")
        if not isinstance(answer, Mapping):
            answer = {}
        complete = bool(answer.get("is_complete"))
        result = None
        if complete:
            # The output is plain text, despite the names.
            result = _result(
                {
                    **answer,
                    "stdout": answer.get("serialized_stdout"),
                    "stderr": answer.get("serialized_stderr"),
                }
            )
        return Execution(task_id=task_id, is_complete=complete, result=result)

    async def wait_execution(
        self, task_id: str, *, poll_interval: float = 0.5
    ) -> ExecutionResult:
        """
        Poll an asynchronous execution until it completes; return its output.

        Errors are raised, not retried. You own the deadline:
        ``with anyio.fail_after(120): await p.wait_execution(task_id)``.
        """
        if poll_interval <= 0:
            msg = "sandbox: poll_interval must be positive"
            raise InvalidParameterError(
                msg, field="poll_interval", value=poll_interval, provider=self.name
            )
        while True:
            state = await self.execution(task_id)
            if state.result is not None:
                return state.result
            await anyio.sleep(poll_interval)


def _result(answer: Mapping[str, Any]) -> ExecutionResult:
    stdout = answer.get("stdout")
    stderr = answer.get("stderr")
    return ExecutionResult(
        stdout=stdout if isinstance(stdout, str) else "",
        stderr=stderr if isinstance(stderr, str) else "",
        execution_time=_float(answer.get("execution_time")),
        cpu_time=_float(answer.get("cpu_time")),
        raw=answer,
    )


def _labels(value: object) -> dict[str, str]:
    # The labels tether stored at create; anything else in their place is
    # someone else's metadata, not labels.
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
