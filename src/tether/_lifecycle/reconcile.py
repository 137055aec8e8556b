"""
Reconcile: the store against what each service reports, and the repairs.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Literal

import attrs

from tether._lifecycle.calls import Calls
from tether._lifecycle.closing import Closer
from tether._lifecycle.creation import deadline, new_id
from tether._lifecycle.health import HealthMonitor
from tether._lifecycle.locate import Locator
from tether._lifecycle.pools import (
    POOL_LABEL,
    POOL_OWNER_LABEL,
    owner_key,
    owner_ttl,
)
from tether._lifecycle.records import Records
from tether._lifecycle.reports import ReconcileAction, ReconcileReport
from tether._lifecycle.runtime import ENDED, Runtime
from tether._lifecycle.scheduler import Scheduler
from tether._lifecycle.slots import Slot, Slots
from tether._log import EVENT_SESSION_ADOPTED, logger
from tether._session import Session, SessionState
from tether.abc import RemoteSession
from tether.exceptions import (
    ConfigError,
    ProviderLoadError,
    ProviderNotFoundError,
    RemoteNotFoundError,
    TetherError,
)


OrphanPolicy = Literal["close", "adopt", "report"]
UnwatchedPolicy = Literal["report", "attach"]


@attrs.define
class _Pass:
    """
    One provider's reconcile: its options and what it found.
    """

    slot: Slot
    dry_run: bool
    orphans: OrphanPolicy
    unwatched: UnwatchedPolicy
    grace: float
    now: float
    #: What the service listed, by remote id (None: it cannot list).
    listed: dict[str, RemoteSession] | None = None
    #: Remote ids this pass gave a record (adopted): no orphans, not foreign.
    claimed: set[str] = attrs.Factory(set)
    #: CREATING records without a remote id: whose a matching session may be.
    creating: list[Session] = attrs.Factory(list)
    #: Per record, the other sessions its lost create answers made.
    duplicates: dict[str, list[RemoteSession]] = attrs.Factory(dict)
    #: Per record, why the service's sessions cannot settle it.
    unresolved: dict[str, str] = attrs.Factory(dict)
    actions: list[ReconcileAction] = attrs.Factory(list)

    def act(
        self,
        kind: str,
        record: Session | None,
        remote_id: str | None,
        detail: str,
        *,
        session_id: str | None = None,
    ) -> None:
        self.actions.append(
            ReconcileAction(
                kind=kind,
                provider=self.slot.name,
                session_id=session_id or (record.id if record else None),
                remote_id=remote_id,
                detail=detail,
            )
        )


class Reconciler:
    def __init__(
        self,
        *,
        runtime: Runtime,
        slots: Slots,
        calls: Calls,
        records: Records,
        scheduler: Scheduler,
        locator: Locator,
        closer: Closer,
        health: HealthMonitor,
    ) -> None:
        self._runtime = runtime
        self._slots = slots
        self._calls = calls
        self._records = records
        self._scheduler = scheduler
        self._locator = locator
        self._closer = closer
        self._health = health

    async def reconcile(
        self,
        *,
        provider: str | None,
        dry_run: bool,
        orphans: OrphanPolicy,
        grace: float,
        unwatched: UnwatchedPolicy = "report",
    ) -> ReconcileReport:
        """
        What :meth:`SessionManager.reconcile` does.
        """
        if orphans not in ("close", "adopt", "report"):
            msg = f"orphans must be 'close', 'adopt' or 'report', not {orphans!r}"
            raise ConfigError(msg)
        if unwatched not in ("report", "attach"):
            msg = f"unwatched must be 'report' or 'attach', not {unwatched!r}"
            raise ConfigError(msg)
        raw_grace: object = grace
        if (
            not isinstance(raw_grace, int | float)
            or isinstance(raw_grace, bool)
            or not raw_grace >= 0
        ):
            msg = f"grace must be a number of seconds, 0 or more, not {grace!r}"
            raise ConfigError(msg)
        records = await self._runtime.store.list(provider=provider)
        if provider is not None:
            names = {provider}
        else:
            # Every provider with records, configured, or in use here.
            names = (
                {r.provider for r in records}
                | set(self._slots.config)
                | set(self._slots.names())
                | self._env_configured()
            )
        actions: list[ReconcileAction] = []
        for name in sorted(names):
            mine = [r for r in records if r.provider == name]
            try:
                slot = self._slots.get(name)
            except (ProviderNotFoundError, ProviderLoadError, ConfigError) as exc:
                if provider is not None:
                    raise
                # Another process's provider: report it, reconcile the rest.
                actions.append(
                    ReconcileAction(
                        kind="skipped",
                        provider=name,
                        session_id=None,
                        remote_id=None,
                        detail=f"{len(mine)} record(s); {type(exc).__name__}: {exc}",
                    )
                )
                continue
            state = _Pass(
                slot=slot,
                dry_run=dry_run,
                orphans=orphans,
                unwatched=unwatched,
                grace=grace,
                now=self._runtime.clock.time(),
            )
            await self._provider(state, mine)
            actions.extend(state.actions)
        report = ReconcileReport(dry_run=dry_run, actions=tuple(actions))
        logger.info(
            "tether.reconciled",
            dry_run=dry_run,
            **{kind: n for kind, n in report.counts.items() if n},
        )
        return report

    def _env_configured(self) -> set[str]:
        """
        Installed providers that ``TETHER_<PROVIDER>_<FIELD>`` variables configure.
        """
        found = set()
        environ = self._slots.environ
        for name in self._slots.registry.names():
            prefix = f"TETHER_{name.upper().replace('-', '_')}_"
            if any(key.startswith(prefix) for key in environ):
                found.add(name)
        return found

    async def _provider(self, state: _Pass, records: list[Session]) -> None:
        slot = state.slot
        if slot.provider.capabilities.list:
            listed = await self._calls.call(slot, slot.provider.list, operation="list")
            state.listed = {r.id: r for r in listed}
        state.creating = [
            r
            for r in records
            if r.state is SessionState.CREATING and r.remote_id is None
        ]
        for record in records:
            if record.state not in ENDED:
                await self._record(state, record)
        if state.listed is not None:
            await self._orphans(state, records)

    async def _lookup(
        self, state: _Pass, record: Session
    ) -> RemoteSession | bool | None:
        """
        The remote session of *record*, None when gone, False when unknowable.

        A listing may be partial (the newest sessions only, or a page limit):
        "not listed" is confirmed by ``get`` where the service has it, never
        taken as gone on its own.
        """
        slot = state.slot
        caps = slot.provider.capabilities
        if state.listed is not None:
            if record.remote_id is not None:
                listed_remote = state.listed.get(record.remote_id)
                if listed_remote is None and caps.get:
                    listed_remote = await self._get(slot, record)
                if listed_remote is not None and not listed_remote.state.is_live:
                    return None  # listed, but dead on the service
                return listed_remote
            candidates = await self._locator.candidates(
                slot, record, list(state.listed.values())
            )
            if len(candidates) > 1:
                return self._ambiguous(state, record, candidates)
            found = candidates[0] if candidates else None
            if found is None and caps.find:
                found = await self._find(slot, record)
            return found
        if record.remote_id is not None and caps.get:
            return await self._get(slot, record)
        if record.remote_id is None and caps.find:
            return await self._find(slot, record)
        return False

    def _ambiguous(
        self, state: _Pass, record: Session, candidates: list[RemoteSession]
    ) -> RemoteSession | bool:
        """
        Several unclaimed sessions match a CREATING record: its create was
        answered by the service more than once, the answers lost. When no
        other record could own any of them, the oldest is the record's and
        the others its duplicates; otherwise nothing can be told.
        """
        others = [
            other
            for other in state.creating
            if other.id != record.id
            and any(state.slot.provider.matches(other, c) for c in candidates)
        ]
        if others:
            state.unresolved[record.id] = (
                f"{len(candidates)} sessions match it, and {len(others)} other "
                "creating record(s) too: which is whose cannot be told"
            )
            return False
        state.duplicates[record.id] = candidates[1:]
        return candidates[0]

    async def _get(self, slot: Slot, record: Session) -> RemoteSession | None:
        return await self._calls.call(
            slot,
            lambda: slot.provider.get(record),
            operation="get",
            session_id=record.id,
        )

    async def _find(self, slot: Slot, record: Session) -> RemoteSession | None:
        return await self._calls.call(
            slot,
            lambda: slot.provider.find(record.id),
            operation="find",
            session_id=record.id,
        )

    async def _record(self, state: _Pass, record: Session) -> None:
        """
        One record that has not ended, against what the service says.
        """
        current = record.state
        age = state.now - record.created_at.timestamp()
        remote = await self._lookup(state, record)
        if remote is False:
            if current is SessionState.CREATING:
                state.act(
                    "unresolved",
                    record,
                    None,
                    state.unresolved.get(
                        record.id, "the service cannot say whether it exists"
                    ),
                )
            return
        if current is SessionState.CREATING:
            if isinstance(remote, RemoteSession):
                state.act(
                    "adopted", record, remote.id, "created before the answer was lost"
                )
                state.claimed.add(remote.id)
                if not state.dry_run:
                    await self._adopt(record, remote)
                for extra in state.duplicates.get(record.id, []):
                    await self._duplicate(state, record, extra)
            elif age >= state.grace:
                state.act("failed", record, None, "never created on the service")
                if not state.dry_run:
                    await self._records.mutate(
                        record.id,
                        lambda s: (
                            s.transition(
                                SessionState.FAILED, error="reconcile: never created"
                            )
                            if s.state is SessionState.CREATING
                            else None
                        ),
                    )
            return
        if current is SessionState.CLOSING or (
            current is SessionState.LOST and isinstance(remote, RemoteSession)
        ):
            state.act(
                "closed", record, record.remote_id, f"was {current.value}; closed again"
            )
            if not state.dry_run:
                with contextlib.suppress(TetherError):
                    await self._closer.close(record.id)
            return
        if current.is_live and remote is None:
            state.act("lost", record, record.remote_id, "the service no longer has it")
            if not state.dry_run:
                await self._health.mark_lost(
                    record.id, "reconcile: the service no longer has it"
                )
            return
        if current.is_live and POOL_OWNER_LABEL in record.labels:
            # A pool's session: its owner's liveness decides, not who
            # watches it (on a sharded store any worker may).
            await self._pooled(state, record)
            return
        if current.is_live and record.id not in self._runtime.tracked:
            await self._unwatched(state, record)

    async def _pooled(self, state: _Pass, record: Session) -> None:
        """
        A live pooled session: closed once the manager whose pool made it is
        gone (its liveness lease lapsed), idle or in use; left alone while
        that manager lives.
        """
        runtime = self._runtime
        owner = record.labels[POOL_OWNER_LABEL]
        if owner == runtime.owner:
            return  # one of our own pools'
        key = owner_key(owner)
        if await runtime.store.claim(key, runtime.owner, owner_ttl(runtime)) is None:
            return  # its manager is alive
        try:
            state.act(
                "closed",
                record,
                record.remote_id,
                f"pooled ({record.labels[POOL_LABEL]}) by a manager that is gone",
            )
            if not state.dry_run:
                with contextlib.suppress(TetherError):
                    await self._closer.close(record.id)
        finally:
            await runtime.store.release(key, runtime.owner)

    async def _unwatched(self, state: _Pass, record: Session) -> None:
        """
        A live session whose lease nobody holds: the manager that made it is
        gone (or never pinged it), so nothing pings, expires or closes it.
        """
        runtime = self._runtime
        token = await runtime.store.claim(
            record.id, runtime.owner, runtime.health.lease_ttl or 30.0
        )
        if token is None:
            return  # a live manager watches it
        if POOL_LABEL in record.labels:
            # A pool lives in its manager's process: with the manager gone,
            # its sessions (idle or in use) have no user left.
            state.act(
                "closed",
                record,
                record.remote_id,
                f"pooled ({record.labels[POOL_LABEL]}) by a manager that is gone",
            )
            if state.dry_run:
                await runtime.store.release(record.id, runtime.owner)
                return
            with contextlib.suppress(TetherError):
                await self._closer.close(record.id)
            await runtime.store.release(record.id, runtime.owner)
            return
        if state.unwatched == "attach" and not state.dry_run:
            state.act(
                "attached",
                record,
                record.remote_id,
                "alive, but no manager watched it: this one does now",
            )
            self._scheduler.track(record)
            return
        await runtime.store.release(record.id, runtime.owner)
        state.act(
            "unwatched",
            record,
            record.remote_id,
            "alive, but no manager watches it (its owner is gone): "
            "attach() it or close it",
        )

    async def _orphans(self, state: _Pass, records: list[Session]) -> None:
        """
        Listed sessions that carry tether's tag but that no live record owns.
        """
        assert state.listed is not None  # noqa: S101
        slot = state.slot
        by_remote = {r.remote_id: r for r in records if r.remote_id}
        by_id = {r.id: r for r in records}
        for remote in state.listed.values():
            if remote.id in state.claimed or not remote.state.is_live:
                # Adopted above, or ended on the service already: nothing to
                # do, and nothing to report again on the next reconcile.
                continue
            owner: Session | None = by_remote.get(remote.id)
            if owner is None and remote.tether_id is not None:
                owner = by_id.get(remote.tether_id)
            if owner is not None and not owner.state.is_terminal:
                continue  # live, or handled above
            if owner is not None and owner.state is SessionState.LOST:
                continue  # closed above
            if owner is None and remote.tether_id is None:
                state.act("foreign", None, remote.id, "not made by tether; left alone")
                continue
            why = "its record ended" if owner is not None else "no record of it"
            if owner is None and state.grace > 0:
                # Perhaps another deployment's, or a create racing us: only
                # sessions known to be older than the grace period go.
                if remote.created_at is None:
                    state.act(
                        "orphan",
                        None,
                        remote.id,
                        f"tagged by tether, {why}; age unknown",
                    )
                    continue
                if state.now - remote.created_at.timestamp() < state.grace:
                    continue
            if state.orphans == "adopt" and owner is None:
                session_id = remote.tether_id or new_id()
                state.act(
                    "adopted",
                    None,
                    remote.id,
                    f"tagged by tether, {why}",
                    session_id=session_id,
                )
                if not state.dry_run:
                    await self._adopt_orphan(slot.name, session_id, remote)
                continue
            kind = "orphan" if state.orphans == "report" else "closed"
            state.act(kind, owner, remote.id, f"tagged by tether, but {why}")
            if state.dry_run or state.orphans == "report":
                continue
            await self._close_remote(slot, remote)

    async def _close_remote(self, slot: Slot, remote: RemoteSession) -> None:
        # A session no record owns, closed through a record made for the call.
        target = Session(
            id=remote.tether_id or remote.id,
            provider=slot.name,
            state=SessionState.LOST,
            remote_id=remote.id,
            data=remote.data,
        )
        with contextlib.suppress(RemoteNotFoundError):
            await self._calls.call(
                slot,
                functools.partial(slot.provider.close, target),
                operation="close",
                session_id=target.id,
            )

    async def _duplicate(
        self, state: _Pass, record: Session, remote: RemoteSession
    ) -> None:
        """
        A second session that *record*'s create made (an attempt whose answer
        was lost, then another): an orphan of that record, by the orphan policy.
        """
        state.claimed.add(remote.id)
        why = "a second session of this record's create, whose answers were lost"
        if state.orphans == "adopt":
            session_id = new_id()
            state.act("adopted", None, remote.id, why, session_id=session_id)
            if not state.dry_run:
                await self._adopt_orphan(state.slot.name, session_id, remote)
            return
        kind = "orphan" if state.orphans == "report" else "closed"
        state.act(kind, record, remote.id, why)
        if not state.dry_run and state.orphans == "close":
            await self._close_remote(state.slot, remote)

    async def _adopt(self, record: Session, remote: RemoteSession) -> None:
        def adopt(current: Session) -> Session | None:
            if current.state is not SessionState.CREATING:
                return None
            return current.transition(
                SessionState.ACTIVE,
                remote_id=remote.id,
                raw_state=remote.raw_state,
                expires_at=deadline(self._slots, current, remote),
                data=remote.data,
                error=None,
            )

        adopted = await self._records.mutate(record.id, adopt)
        logger.info(
            EVENT_SESSION_ADOPTED,
            provider=record.provider,
            session_id=record.id,
            remote_id=remote.id,
        )
        self._scheduler.track(adopted)

    async def _adopt_orphan(
        self, name: str, session_id: str, remote: RemoteSession
    ) -> None:
        now = self._runtime.now()
        record = Session(
            id=session_id,
            provider=name,
            state=SessionState.CREATING,
            labels=remote.labels,
            created_at=now,
            updated_at=now,
        )
        stored = await self._runtime.store.insert(record)
        await self._adopt(stored, remote)
