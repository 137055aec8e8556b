"""
Creating sessions: validation before any request, failover across candidates
under one attempt budget and the breakers, admission per credential, the
write-ahead record, and settling what a create did (unknown outcomes, lost
answers, a caller cancelled half-way).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from tether import _retry
from tether._config import Candidate, FailoverPolicy
from tether._events import BreakerState, EventKind
from tether._lifecycle.bus import EventBus
from tether._lifecycle.calls import Calls
from tether._lifecycle.closing import Closer
from tether._lifecycle.locate import Locator
from tether._lifecycle.records import Records
from tether._lifecycle.runtime import Runtime, Tracked
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import Slot, Slots
from tether._log import (
    EVENT_FAILOVER,
    EVENT_SESSION_ADOPTED,
    EVENT_SESSION_CREATE_FAILED,
    EVENT_SESSION_CREATED,
    EVENT_SESSION_CREATING,
    EVENT_SESSION_OUTCOME_UNKNOWN,
    logger,
)
from tether._redact import redact_params
from tether._session import Session, SessionState
from tether.abc import CreateRequest, RemoteSession
from tether.exceptions import (
    AdmissionError,
    ConfigError,
    InvalidParameterError,
    NotSupportedError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    TetherError,
    TransientProviderError,
)


#: One candidate, checked: where, its parsed parameters, its lifetime.
Plan = tuple[Candidate, Slot, dict[str, Any], float | None]


def positive_seconds(value: object) -> bool:
    # Typed callers pass numbers; untyped ones get a typed error, not a crash.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def new_id() -> str:
    """
    A new session id: ``uuid.uuid4().hex``, without building a UUID object.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


def check_labels(labels: Mapping[Any, Any] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    raw: object = labels  # untyped callers get a typed error
    if raw is not None and not isinstance(raw, Mapping):
        msg = f"labels must be a mapping of strings to strings, not {labels!r}"
        raise InvalidParameterError(msg, field="labels", value=labels)
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            msg = f"labels must map strings to strings, got {k!r}: {v!r}"
            raise InvalidParameterError(msg, field="labels", value=labels)
        result[k] = v
    return result


def deadline(slots: Slots, record: Session, remote: RemoteSession) -> datetime | None:
    """
    The session's deadline: the service's, else tether's own from its lifetime.

    A service that ends sessions by itself (server TTL) but cannot say when
    yet (a sandbox VM's lifetime starts with the VM) gets no tether deadline:
    pings learn the real one. Guessing would close it early.
    """
    if remote.expires_at is not None or record.lifetime is None:
        return remote.expires_at
    slot = slots.loaded(record.provider)
    if slot is not None and slot.provider.capabilities.server_ttl:
        return None
    return record.created_at + timedelta(seconds=record.lifetime)


@attrs.define
class _CreateAttempts:
    """
    What one create's attempts did on the service, whatever the caller does.
    """

    created: RemoteSession | None = None
    maybe_created: bool = False
    #: An attempt's answer was lost and the service's listing did not show
    #: its session: a listing cannot prove it absent (it may be partial).
    unconfirmed: bool = False


class _CancelledCreateError(TetherError):
    """
    Why a create that was cancelled before the service answered is FAILED.
    """


class Creator:
    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        calls: Calls,
        records: Records,
        bus: EventBus,
        scheduler: Scheduler,
        locator: Locator,
        closer: Closer,
    ) -> None:
        self._runtime = runtime
        self._slots = slots
        self._calls = calls
        self._records = records
        self._bus = bus
        self._scheduler = scheduler
        self._locator = locator
        self._closer = closer

    async def create(
        self,
        provider: str | FailoverPolicy,
        *,
        labels: Mapping[str, str] | None,
        lifetime: float | timedelta | None,
        keepalive: bool,
        params: Mapping[str, Any],
        no_wait: bool = False,
    ) -> Session:
        """
        What :meth:`SessionManager.create` does: every input is checked before
        anything is sent anywhere.

        With *no_wait* (a pool's refill), a credential at its session limit
        raises :class:`AdmissionError` at once, whatever the admission policy:
        no waiting for a free slot, no closing someone's session for it.
        """
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
        if lifetime is not None and not positive_seconds(lifetime):
            msg = f"lifetime must be a positive number of seconds, not {lifetime!r}"
            raise InvalidParameterError(msg, field="lifetime", value=lifetime)
        checked_labels = check_labels(labels)
        keep: object = keepalive
        if not isinstance(keep, bool):
            msg = f"keepalive must be True or False, not {keepalive!r}"
            raise InvalidParameterError(msg, field="keepalive", value=keepalive)
        policy: FailoverPolicy | None
        if isinstance(provider, str):
            slot = self._slots.get(provider)
            parsed, life = self._check_candidate(
                slot, provider, params, lifetime, keepalive=keepalive
            )
            if slot.breaker.state is BreakerState.CLOSED:
                # One provider with a closed breaker (nearly every create): what
                # the failover loop below would do, without its bookkeeping.
                return await self._create_on(
                    slot,
                    parsed,
                    life,
                    checked_labels,
                    self._runtime.budget(),
                    keepalive=keepalive,
                    no_wait=no_wait,
                )
            policy = None
            plans = [(Candidate(provider=provider, params=params), slot, parsed, life)]
        elif isinstance(provider, FailoverPolicy):
            if params:
                msg = "with a FailoverPolicy, give parameters on each Candidate"
                raise ConfigError(msg)
            policy = provider
            # Validate every candidate before anything is sent anywhere.
            plans = []
            for candidate in provider.candidates:
                slot = self._slots.get(candidate.provider)
                parsed, life = self._check_candidate(
                    slot,
                    candidate.provider,
                    candidate.params,
                    lifetime,
                    keepalive=keepalive,
                )
                plans.append((candidate, slot, parsed, life))
        else:  # untyped callers get a clear error
            msg = f"provider must be a name or a FailoverPolicy, not {type(provider).__name__}"  # type: ignore[unreachable]
            raise ConfigError(msg)
        per_candidate = (
            policy.attempts_per_candidate if policy else self._runtime.retry.attempts
        )
        return await self._failover(
            plans,
            policy,
            self._runtime.budget(),
            per_candidate,
            checked_labels,
            keepalive=keepalive,
            no_wait=no_wait,
        )

    async def connect(
        self,
        name: str,
        remote_id: str,
        *,
        labels: Mapping[str, str] | None,
        lifetime: float | timedelta | None,
    ) -> Session:
        """
        Record and watch a live session tether did not create, once the
        service confirms it.
        """
        raw: object = remote_id
        if not isinstance(raw, str) or not raw:
            msg = f"remote_id must be the service's session id, not {remote_id!r}"
            raise InvalidParameterError(msg, field="remote_id", value=remote_id)
        if isinstance(lifetime, timedelta):
            lifetime = lifetime.total_seconds()
        if lifetime is not None and not positive_seconds(lifetime):
            msg = f"lifetime must be a positive number of seconds, not {lifetime!r}"
            raise InvalidParameterError(msg, field="lifetime", value=lifetime)
        checked_labels = check_labels(labels)
        slot = self._slots.get(name)
        if not slot.provider.capabilities.get:
            raise slot.provider.not_supported("connect")
        now = self._runtime.now()
        probe = Session(
            id=new_id(),
            provider=name,
            state=SessionState.ACTIVE,
            created_at=now,
            updated_at=now,
            remote_id=remote_id,
            labels=checked_labels,
            credential=slot.credential,
            lifetime=lifetime,
        )
        remote = await self._calls.call(
            slot,
            lambda: slot.provider.get(probe),
            operation="get",
            session_id=probe.id,
        )
        if remote is None or not remote.state.is_live:
            msg = f"{name} has no live session {remote_id}"
            raise RemoteNotFoundError(
                msg, provider=name, operation="connect", session_id=probe.id
            )
        record = probe.evolve(
            raw_state=remote.raw_state,
            expires_at=deadline(self._slots, probe, remote),
            data=remote.data,
        )
        stored = await self._runtime.store.insert(record)
        logger.info(
            EVENT_SESSION_ADOPTED,
            provider=name,
            session_id=stored.id,
            remote_id=remote_id,
        )
        self._scheduler.track(stored)
        self._bus.emit(EventKind.CREATED, provider=name, session=stored)
        return stored

    def _check_candidate(
        self,
        slot: Slot,
        name: str,
        params: Mapping[str, Any],
        lifetime: float | None,
        *,
        keepalive: bool,
    ) -> tuple[dict[str, Any], float | None]:
        """
        One candidate's parameters and lifetime, validated before any request.
        """
        parsed = slot.provider.parse_create(params)
        life = slot.provider.lifetime_for(lifetime, parsed)
        if keepalive and not (
            slot.provider.capabilities.renew
            or not slot.provider.capabilities.server_ttl
        ):
            raise NotSupportedError(
                f"{name} cannot renew, so it cannot keep sessions alive",
                provider=name,
                operation="keepalive",
            )
        if keepalive and life is None:
            msg = "keepalive needs a lifetime to renew (give lifetime=)"
            raise InvalidParameterError(msg, field="keepalive", value=keepalive)
        return parsed, life

    async def recreate(self, lost: Session, tracked: Tracked) -> Session | None:
        """
        Replace a LOST session by its failover policy's next candidate.
        """
        policy = tracked.failover
        assert policy is not None  # noqa: S101
        plans = []
        for candidate in policy.candidates:
            slot = self._slots.get(candidate.provider)
            parsed = slot.provider.parse_create(candidate.params)
            plans.append(
                (
                    candidate,
                    slot,
                    parsed,
                    slot.provider.lifetime_for(lost.lifetime, parsed),
                )
            )
        try:
            new = await self._failover(
                plans,
                policy,
                self._runtime.budget(),
                policy.attempts_per_candidate,
                dict(lost.labels),
                keepalive=lost.keepalive,
                exclude=tracked.candidate,
            )
        except TetherError as exc:
            logger.warning(
                EVENT_FAILOVER,
                provider=lost.provider,
                previous=lost.id,
                next=None,
                cause=type(exc).__name__,
            )
            return None
        await self._records.mutate(
            lost.id, lambda s: s.evolve(data={**s.data, "replaced_by": new.id})
        )
        logger.warning(
            EVENT_FAILOVER, provider=new.provider, previous=lost.id, next=new.id
        )
        self._bus.emit(
            EventKind.FAILOVER,
            provider=new.provider,
            session=new,
            detail=f"{lost.id} was lost; {new.id} replaces it",
            data={"old": lost.id, "new": new.id},
        )
        return new

    async def _failover(
        self,
        plans: list[Plan],
        policy: FailoverPolicy | None,
        budget: _retry.AttemptBudget,
        per_candidate: int,
        labels: dict[str, str],
        *,
        keepalive: bool,
        exclude: Candidate | None = None,
        no_wait: bool = False,
    ) -> Session:
        calls = self._calls
        clock = self._runtime.clock
        failed: set[int] = set()
        last_error: BaseException | None = None
        causes: list[tuple[str, BaseException]] = []
        previous: Candidate | None = None
        while True:
            progressed = False
            cooling: list[float] = []
            for index, (candidate, slot, parsed, life) in enumerate(plans):
                if index in failed or candidate == exclude:
                    continue
                if budget.exhausted:
                    break
                breakers = [slot.breaker]
                if policy is not None:
                    breakers.append(self._slots.breaker(candidate.breaker_key))
                if not all(calls.allow(b, candidate.provider) for b in breakers):
                    cooling.append(max(b.ready_at() for b in breakers))
                    continue
                progressed = True
                if previous is not None:
                    logger.warning(
                        EVENT_FAILOVER,
                        provider=candidate.provider,
                        previous=previous.breaker_key,
                        next=candidate.breaker_key,
                        cause=type(last_error).__name__,
                    )
                    self._bus.emit(
                        EventKind.FAILOVER,
                        provider=candidate.provider,
                        detail=str(last_error),
                        data={
                            "from": previous.breaker_key,
                            "to": candidate.breaker_key,
                        },
                    )
                share = _retry.AttemptBudget(total=min(per_candidate, budget.left))
                try:
                    session = await self._create_on(
                        slot,
                        parsed,
                        life,
                        labels,
                        share,
                        keepalive=keepalive,
                        no_wait=no_wait,
                    )
                except (ProviderError, AdmissionError) as exc:
                    budget.used += share.used
                    failed.add(index)
                    last_error = exc
                    causes.append((candidate.breaker_key, exc))
                    previous = candidate
                    if policy is not None and isinstance(exc, TransientProviderError):
                        calls.failure(
                            self._slots.breaker(candidate.breaker_key),
                            candidate.provider,
                        )
                    if policy is None or isinstance(exc, OutcomeUnknownError):
                        raise
                    continue
                budget.used += share.used
                if policy is not None:
                    calls.success(
                        self._slots.breaker(candidate.breaker_key), candidate.provider
                    )
                    self._scheduler.track(session, failover=policy, candidate=candidate)
                return session
            if progressed or not cooling or budget.exhausted:
                break
            # Every remaining candidate is cooling down: wait for the earliest,
            # within the caller's deadline.
            wait = min(cooling) - clock.time()
            caller_deadline = anyio.current_effective_deadline()
            if (
                caller_deadline != math.inf
                and anyio.current_time() + wait > caller_deadline
            ):
                break
            await clock.sleep(max(wait, 0.0))
        if last_error is not None:
            if len(causes) > 1:
                # One error that tells every candidate's story, not only the last.
                last_error.add_note(
                    "every failover candidate failed:\n"
                    + "\n".join(
                        f"  {key}: {type(exc).__name__}: {exc}" for key, exc in causes
                    )
                )
                if isinstance(last_error, ProviderError):
                    last_error.failover_causes = tuple(causes)
            raise last_error
        names = ", ".join(c.breaker_key for c, *_ in plans)
        msg = f"no candidate could be tried ({names}): circuit breakers are open"
        raise ProviderUnavailableError(
            msg, provider=plans[0][0].provider, operation="create"
        )

    # -- admission ---------------------------------------------------------------

    async def _admit(
        self, record: Session, limit: int | None, *, no_wait: bool = False
    ) -> Session:
        """
        Write the record ahead, within the credential's session limit (with
        *no_wait*, as admission mode ``"reject"`` would).
        """
        store = self._runtime.store
        if limit is None or record.credential is None:
            return await store.insert(record)
        admission = self._runtime.admission
        with anyio.move_on_after(admission.timeout) as scope:
            while True:
                freed = self._records.slot_freed()
                try:
                    return await store.insert(record, credential_limit=limit)
                except AdmissionError:
                    if no_wait or admission.mode == "reject":
                        raise
                    if admission.mode == "replace":
                        await self._replace_oldest(record)
                        continue
                # Slots this manager frees set the event; other managers on a
                # shared store cannot, so look again now and then.
                with anyio.move_on_after(admission.poll_interval):
                    await freed.wait()
        assert scope.cancelled_caught  # noqa: S101
        msg = (
            f"{record.provider}: waited {admission.timeout}s for a free session "
            f"slot on this credential (limit {limit})"
        )
        raise AdmissionError(
            msg, provider=record.provider, credential=record.credential, limit=limit
        )

    async def _replace_oldest(self, record: Session) -> None:
        live = [
            s
            for s in await self._runtime.store.list(provider=record.provider)
            if s.credential == record.credential
            and s.state.is_live
            and s.id != record.id
        ]
        if not live:
            return
        oldest = min(live, key=lambda s: s.created_at)
        with self._runtime.shielded():
            await self._closer.close(oldest.id)

    # -- one candidate -----------------------------------------------------------

    async def _create_on(
        self,
        slot: Slot,
        parsed: dict[str, Any],
        lifetime: float | None,
        labels: dict[str, str],
        budget: _retry.AttemptBudget,
        *,
        keepalive: bool,
        no_wait: bool = False,
    ) -> Session:
        runtime = self._runtime
        now = runtime.now()
        record = Session(
            id=new_id(),
            provider=slot.name,
            state=SessionState.CREATING,
            created_at=now,
            updated_at=now,
            labels=labels,
            # The record is stored: secret parameters keep their names only.
            params=redact_params(parsed, slot.provider.secret_params),
            credential=slot.credential,
            lifetime=lifetime,
            keepalive=keepalive,
        )
        log = logger.bind(provider=slot.name, session_id=record.id)
        # Write-ahead: the intent is recorded before the service hears of it.
        record = await self._admit(
            record,
            slot.provider.capabilities.max_sessions_per_credential,
            no_wait=no_wait,
        )
        log.debug(EVENT_SESSION_CREATING)
        request = CreateRequest(
            tether_id=record.id, params=parsed, labels=labels, lifetime=lifetime
        )
        remote: RemoteSession | None = None
        error: BaseException | None = None
        attempts = _CreateAttempts()
        try:
            try:
                remote = await self._create_remote(slot, request, budget, attempts)
            except Exception as exc:  # noqa: BLE001 -- settled, then re-raised
                error = exc
                if attempts.unconfirmed and not isinstance(exc, OutcomeUnknownError):
                    # An earlier attempt may have made a session the listing
                    # did not show: not a failure for certain. Reconcile
                    # adopts it if it shows up, fails the record if not.
                    error = OutcomeUnknownError(
                        f"an earlier attempt's session may exist (the service's "
                        f"listing did not show it, which does not prove it "
                        f"absent); the last attempt: {type(exc).__name__}: {exc}",
                        provider=slot.name,
                        operation="create",
                        session_id=record.id,
                    )
                    error.__cause__ = exc
            with runtime.shield_writes():
                record = await self._settle(record, remote, error, log)
            # A caller cancelled meanwhile gets its cancellation here (and the
            # session closed, below); the others need no trip round the loop.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            # The caller gave up. Each attempt ran shielded, so we know what the
            # service made: record it, then close it, since nobody holds it.
            with runtime.shielded():
                await self._abandon(record, attempts, log)
            raise
        if error is not None:
            raise error
        self._scheduler.track(record)
        self._bus.emit(EventKind.CREATED, provider=slot.name, session=record)
        return record

    async def _create_remote(
        self,
        slot: Slot,
        request: CreateRequest,
        budget: _retry.AttemptBudget,
        attempts: _CreateAttempts,
    ) -> RemoteSession:
        provider = slot.provider
        runtime = self._runtime

        async def attempt() -> RemoteSession:
            # Each attempt is shielded and bounded: a caller cancelled half-way
            # must not leave a remote session that nobody tracks. Between
            # attempts (while backing off) cancellation is delivered.
            with runtime.shielded():
                try:
                    created = await provider.create(request)
                except OutcomeUnknownError:
                    attempts.maybe_created = True
                    raise
                except ProviderError as exc:
                    if exc.status_code is None or not 200 <= exc.status_code < 300:  # noqa: PLR2004
                        raise
                    # The service accepted it, whatever the provider made of
                    # the answer: the session may exist. Never create blindly.
                    attempts.maybe_created = True
                    raise OutcomeUnknownError(
                        f"{slot.name} accepted the create ({exc.status_code}) "
                        f"but its answer could not be used: {exc}",
                        provider=slot.name,
                        operation="create",
                        session_id=request.tether_id,
                        status_code=exc.status_code,
                    ) from exc
                attempts.created = created
                return created
            attempts.maybe_created = True
            msg = (
                f"{slot.name} did not finish creating within {runtime.shield_timeout}s"
            )
            raise OutcomeUnknownError(
                msg,
                provider=slot.name,
                operation="create",
                session_id=request.tether_id,
            )

        while True:
            try:
                return await self._calls.call(
                    slot,
                    attempt,
                    operation="create",
                    budget=budget,
                    idempotent=False,
                    session_id=request.tether_id,
                )
            except OutcomeUnknownError:
                if not self._locator.can_locate(slot) or budget.exhausted:
                    raise
                # The service may have made it: ask before trying again.
                found = await self._locator.locate(
                    slot,
                    Session(
                        id=request.tether_id,
                        provider=slot.name,
                        state=SessionState.CREATING,
                        params=request.params,
                        labels=request.labels,
                    ),
                )
                if found is not None:
                    attempts.created = found
                    logger.info(
                        EVENT_SESSION_ADOPTED,
                        provider=slot.name,
                        session_id=request.tether_id,
                        remote_id=found.id,
                    )
                    return found
                attempts.maybe_created = False
                if not slot.provider.capabilities.find:
                    attempts.unconfirmed = True

    async def _settle(
        self,
        record: Session,
        remote: RemoteSession | None,
        error: BaseException | None,
        log: Any,
    ) -> Session:
        """
        Record what the create did: ACTIVE, still CREATING (outcome unknown,
        for reconcile), or FAILED.
        """
        store = self._runtime.store
        if remote is not None:
            expires = deadline(self._slots, record, remote)
            state = remote.state if remote.state.is_live else SessionState.ACTIVE
            if state is SessionState.CREATING:
                state = SessionState.ACTIVE
            new = record.transition(
                state,
                remote_id=remote.id,
                raw_state=remote.raw_state,
                expires_at=expires,
                data=remote.data,
            )
            stored = await store.update(new)
            log.info(
                EVENT_SESSION_CREATED,
                remote_id=remote.id,
                expires_at=expires.isoformat() if expires else None,
            )
            return stored
        if isinstance(error, OutcomeUnknownError):
            log.warning(EVENT_SESSION_OUTCOME_UNKNOWN, detail=str(error))
            return await store.update(record.evolve(error=f"outcome unknown: {error}"))
        failed = record.transition(
            SessionState.FAILED, error=f"{type(error).__name__}: {error}"
        )
        stored = await store.update(failed)
        self._records.after_write(record, stored)
        self._bus.emit(
            EventKind.CREATE_FAILED,
            provider=record.provider,
            session=stored,
            previous=SessionState.CREATING,
            detail=stored.error,
        )
        log.warning(
            EVENT_SESSION_CREATE_FAILED,
            error=type(error).__name__,
            status_code=getattr(error, "status_code", None),
        )
        return stored

    async def _abandon(
        self, record: Session, attempts: _CreateAttempts, log: Any
    ) -> None:
        """
        The caller was cancelled: settle the record by what the service made,
        and close what it made, since nobody holds it.
        """
        current = await self._records.current(record.id)
        if current.state is SessionState.CREATING:
            slot = self._slots.get(record.provider)
            if attempts.created is not None:
                current = await self._settle(current, attempts.created, None, log)
            elif attempts.maybe_created and self._locator.can_locate(slot):
                # The service may have it: look, and settle either way.
                with contextlib.suppress(TetherError):
                    found = await self._locator.locate(slot, current)
                    current = await self._settle(
                        current,
                        found,
                        None
                        if found is not None
                        else _CancelledCreateError(
                            "cancelled; the service has no such session"
                        ),
                        log,
                    )
                if not current.state.is_live or current.state is SessionState.CREATING:
                    return
            elif attempts.maybe_created:
                # The service may have it: keep the intent for reconcile.
                await self._settle(
                    current,
                    None,
                    OutcomeUnknownError(
                        "cancelled while the outcome was unknown",
                        provider=record.provider,
                        operation="create",
                    ),
                    log,
                )
                return
            else:
                await self._settle(
                    current,
                    None,
                    _CancelledCreateError("cancelled before the service created it"),
                    log,
                )
                return
        if current.state.is_live:
            with contextlib.suppress(TetherError):
                await self._closer.close(record.id)
