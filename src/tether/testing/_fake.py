"""
FakeProvider: a provider whose "service" is an in-memory object you script.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import anyio
import attrs

from tether._redact import Secret
from tether._session import Health, HealthStatus, Session, SessionState
from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    Provider,
    ProviderConfig,
    RemoteSession,
)
from tether.exceptions import (
    AuthError,
    InvalidParameterError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
)


_FAULTS: Mapping[str, Callable[..., ProviderError]] = {
    "unavailable": lambda **kw: ProviderUnavailableError(
        "fake: service unavailable", status_code=503, **kw
    ),
    "rate_limited": lambda retry_after=None, **kw: RateLimitedError(
        "fake: too many requests", retry_after=retry_after, status_code=429, **kw
    ),
    "auth": lambda **kw: AuthError("fake: bad credentials", status_code=401, **kw),
    "not_found": lambda **kw: RemoteNotFoundError(
        "fake: no such session", status_code=404, **kw
    ),
}


_MAX_SIZE = 8


@attrs.define
class FakeRemote:
    """
    One session as the fake service holds it.
    """

    id: str
    tether_id: str
    params: dict[str, Any]
    created_at: float
    expires_at: float | None
    state: str = "running"
    data: dict[str, Any] = attrs.field(factory=dict)
    labels: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class _Fault:
    kind: str
    times: int
    retry_after: float | None
    after: bool


@attrs.define
class FakeBackend:
    """
    The fake service behind :class:`FakeProvider`: script it from tests.

    Args:
        clock: Its time source; pass ``ManualClock().time`` to move it by hand.

    Attributes:
        sessions: Every session it ever created, by remote id.
        calls: How many times each operation was called.
        list_limit: List at most this many sessions, the newest first, as
            services that cap or page their listings do (``None``: all).
        list_ended: List ended sessions too (as ended), as services that keep
            killed sessions in their listings do.
    """

    clock: Callable[[], float] = time.time
    sessions: dict[str, FakeRemote] = attrs.field(factory=dict)
    calls: Counter[str] = attrs.field(factory=Counter)
    list_limit: int | None = None
    list_ended: bool = False
    _faults: dict[str, list[_Fault]] = attrs.field(factory=dict, init=False)
    _gates: dict[str, anyio.Event] = attrs.field(factory=dict, init=False)
    _entered: dict[str, anyio.Event] = attrs.field(factory=dict, init=False)
    _scripts: dict[str, list[str]] = attrs.field(factory=dict, init=False)

    def fail(
        self,
        operation: str,
        kind: str = "unavailable",
        *,
        times: int = 1,
        retry_after: float | None = None,
        after: bool = False,
    ) -> None:
        """
        Make the next *times* calls of *operation* fail.

        Args:
            operation: ``"create"``, ``"ping"``, ``"update"``, ``"close"``,
                ``"renew"``, ``"get"``, ``"list"`` or ``"find"``.
            kind: ``"unavailable"`` (503), ``"rate_limited"`` (429),
                ``"auth"`` (401), ``"not_found"`` (404), or ``"timeout"``: the
                request is carried out but no answer comes (outcome unknown).
            times: How many calls fail.
            retry_after: The ``Retry-After`` of a ``rate_limited`` fault.
            after: Fail after carrying the operation out (``"timeout"`` always does).
        """
        if kind not in (*_FAULTS, "timeout"):
            msg = f"unknown fault kind {kind!r}"
            raise ValueError(msg)
        self._faults.setdefault(operation, []).append(
            _Fault(
                kind=kind,
                times=times,
                retry_after=retry_after,
                after=after or kind == "timeout",
            )
        )

    def clear_faults(self, operation: str | None = None) -> None:
        """
        Forget queued faults, of *operation* or of all operations.
        """
        if operation is None:
            self._faults.clear()
        else:
            self._faults.pop(operation, None)

    def gate(self, operation: str) -> tuple[anyio.Event, anyio.Event]:
        """
        Hold calls of *operation* until released.

        Returns:
            ``(entered, release)``: *entered* is set when a call arrives; set
            *release* to let it (and later calls) through.
        """
        entered, release = anyio.Event(), anyio.Event()
        self._entered[operation] = entered
        self._gates[operation] = release
        return entered, release

    def script(self, remote_id: str, states: Sequence[str]) -> None:
        """
        Make the session's next pings report *states* in order, then stay on the last.
        """
        self._scripts[remote_id] = list(states)

    def kill(self, remote_id: str) -> None:
        """
        End a session on the service's side, as if it died.
        """
        self.sessions[remote_id].state = "dead"

    def live(self) -> list[FakeRemote]:
        """
        The sessions the service holds as live now.
        """
        now = self.clock()
        return [
            s
            for s in self.sessions.values()
            if s.state == "running" and (s.expires_at is None or s.expires_at > now)
        ]

    def live_ids(self) -> set[str]:
        """
        The remote ids of :meth:`live` sessions.
        """
        return {s.id for s in self.live()}

    async def _enter(self, operation: str, **context: Any) -> _Fault | None:
        self.calls[operation] += 1
        entered = self._entered.pop(operation, None)
        if entered is not None:
            entered.set()
        gate = self._gates.get(operation)
        if gate is not None:
            await gate.wait()
        else:
            await anyio.lowlevel.checkpoint()
        queue = self._faults.get(operation)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        if not fault.after:
            raise self._error(fault, operation, **context)
        return fault

    def _error(self, fault: _Fault, operation: str, **context: Any) -> ProviderError:
        kw = {"provider": context.get("provider", "fake"), "operation": operation}
        if fault.kind == "timeout":
            return OutcomeUnknownError("fake: no answer", **kw)
        if fault.kind == "rate_limited":
            return _FAULTS["rate_limited"](retry_after=fault.retry_after, **kw)
        return _FAULTS[fault.kind](**kw)

    def _state(self, remote: FakeRemote) -> str:
        script = self._scripts.get(remote.id)
        if script:
            remote.state = script.pop(0) if len(script) > 1 else script[0]
        if (
            remote.state == "running"
            and remote.expires_at is not None
            and self.clock() >= remote.expires_at
        ):
            remote.state = "expired"
        return remote.state


@attrs.frozen(kw_only=True)
class FakeConfig(ProviderConfig):
    """
    Config of :class:`FakeProvider`.

    Attributes:
        api_key: A credential, to exercise secret handling and admission.
        backend: The fake service; share one between a test and the manager.
    """

    base_url: str = "http://fake.invalid"
    api_key: Secret = attrs.field(default=Secret("fake-key"), converter=Secret)
    backend: FakeBackend = attrs.field(factory=FakeBackend, eq=False, repr=False)


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class FakeProvider(Provider[FakeConfig]):
    """
    A provider with every capability, backed by a scriptable :class:`FakeBackend`.

    It never touches the network. Create parameters: ``size`` (an int from 1 to
    8), ``note`` (a string); updates may change ``note``. Subclass it to change
    :attr:`capabilities`, e.g. to declare a per-credential session limit.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        update=True,
        renew=True,
        get=True,
        list=True,
        find=True,
        server_ttl=True,
        min_lifetime=1,
        max_lifetime=86_400,
        ping_interval=30.0,
    )
    config_class: ClassVar[type[ProviderConfig]] = FakeConfig

    @classmethod
    def client_options(cls, config: FakeConfig) -> ClientOptions:
        return ClientOptions(base_url=config.base_url, timeout=config.timeout)

    @property
    def backend(self) -> FakeBackend:
        return self.config.backend

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in params.items():
            if key == "size":
                if (
                    not isinstance(value, int)
                    or isinstance(value, bool)
                    or not 1 <= value <= _MAX_SIZE
                ):
                    msg = f"size must be an integer from 1 to 8, not {value!r}"
                    raise InvalidParameterError(
                        msg,
                        field="size",
                        value=value,
                        allowed="1 to 8",
                        provider=self.name,
                    )
            elif key == "note":
                if not isinstance(value, str):
                    msg = f"note must be a string, not {type(value).__name__}"
                    raise InvalidParameterError(
                        msg, field="note", value=value, provider=self.name
                    )
            else:
                msg = f"{self.name} takes no parameter {key!r} (known: note, size)"
                raise InvalidParameterError(
                    msg, field=key, value=value, provider=self.name
                )
            result[key] = value
        return result

    def parse_update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - {"note"}
        if unknown:
            field = min(unknown)
            msg = f"{self.name} can update only 'note', not {field!r}"
            raise InvalidParameterError(msg, field=field, provider=self.name)
        return self.parse_create(changes)

    def _remote(self, remote: FakeRemote) -> RemoteSession:
        expired = remote.state == "expired" or (
            remote.state == "running"
            and remote.expires_at is not None
            and self.backend.clock() >= remote.expires_at
        )
        return RemoteSession(
            id=remote.id,
            raw_state="expired" if expired else remote.state,
            state=SessionState.EXPIRED if expired else SessionState.ACTIVE,
            expires_at=_ts(remote.expires_at),
            tether_id=remote.tether_id or None,
            created_at=_ts(remote.created_at),
            data={"params": dict(remote.params), **remote.data},
            labels=remote.labels,
        )

    def _lookup(self, session: Session, operation: str) -> FakeRemote:
        remote = self.backend.sessions.get(session.remote_id or "")
        if remote is None:
            msg = f"fake: no session {session.remote_id}"
            raise RemoteNotFoundError(
                msg,
                provider=self.name,
                operation=operation,
                session_id=session.id,
                status_code=404,
            )
        return remote

    async def _maybe_fail_after(self, fault: _Fault | None, operation: str) -> None:
        if fault is not None:
            raise self.backend._error(fault, operation, provider=self.name)  # noqa: SLF001

    async def create(self, request: CreateRequest) -> RemoteSession:
        fault = await self.backend._enter("create", provider=self.name)  # noqa: SLF001
        now = self.backend.clock()
        remote = FakeRemote(
            id=f"fake-{uuid.uuid4().hex[:12]}",
            tether_id=request.tether_id,
            params=dict(request.params),
            labels=dict(request.labels),
            created_at=now,
            expires_at=now + request.lifetime if request.lifetime else None,
        )
        self.backend.sessions[remote.id] = remote
        await self._maybe_fail_after(fault, "create")
        return self._remote(remote)

    async def ping(self, session: Session) -> Health:
        fault = await self.backend._enter("ping", provider=self.name)  # noqa: SLF001
        remote = self.backend.sessions.get(session.remote_id or "")
        await self._maybe_fail_after(fault, "ping")
        if remote is None:
            return Health(
                status=HealthStatus.GONE, raw_state=None, detail="no such session"
            )
        state = self.backend._state(remote)  # noqa: SLF001
        status = {
            "running": HealthStatus.ALIVE,
            "sick": HealthStatus.DEGRADED,
            "expired": HealthStatus.EXPIRED,
        }.get(state, HealthStatus.GONE)
        return Health(status=status, raw_state=state, expires_at=_ts(remote.expires_at))

    async def update(
        self, session: Session, changes: Mapping[str, Any]
    ) -> RemoteSession:
        fault = await self.backend._enter("update", provider=self.name)  # noqa: SLF001
        remote = self._lookup(session, "update")
        remote.params.update(changes)
        await self._maybe_fail_after(fault, "update")
        return self._remote(remote)

    async def renew(self, session: Session, lifetime: float) -> RemoteSession:
        fault = await self.backend._enter("renew", provider=self.name)  # noqa: SLF001
        remote = self._lookup(session, "renew")
        remote.expires_at = max(
            remote.expires_at or 0.0, self.backend.clock() + lifetime
        )
        await self._maybe_fail_after(fault, "renew")
        return self._remote(remote)

    async def close(self, session: Session) -> None:
        fault = await self.backend._enter("close", provider=self.name)  # noqa: SLF001
        remote = self.backend.sessions.get(session.remote_id or "")
        if remote is not None:
            remote.state = "closed"
        await self._maybe_fail_after(fault, "close")

    async def get(self, session: Session) -> RemoteSession | None:
        await self.backend._enter("get", provider=self.name)  # noqa: SLF001
        remote = self.backend.sessions.get(session.remote_id or "")
        if remote is None or remote.state in ("closed", "dead"):
            return None
        return self._remote(remote)

    async def list(self) -> Sequence[RemoteSession]:
        backend = self.backend
        await backend._enter("list", provider=self.name)  # noqa: SLF001
        live = backend.live()
        rows = list(backend.sessions.values()) if backend.list_ended else live
        if backend.list_limit is not None:
            rows = sorted(rows, key=lambda r: r.created_at, reverse=True)
            rows = rows[: backend.list_limit]
        live_ids = {r.id for r in live}
        return [
            self._remote(r)
            if r.id in live_ids
            else attrs.evolve(self._remote(r), state=SessionState.CLOSED)
            for r in rows
        ]

    async def find(self, tether_id: str) -> RemoteSession | None:
        await self.backend._enter("find", provider=self.name)  # noqa: SLF001
        for remote in self.backend.sessions.values():
            if remote.tether_id == tether_id and remote.state == "running":
                return self._remote(remote)
        return None
