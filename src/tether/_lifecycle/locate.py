"""
Finding the remote session of a record whose create answer was lost: by
tether's tag where the service keeps it, else in the service's list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tether._lifecycle.calls import Calls
from tether._lifecycle.runtime import Runtime
from tether._lifecycle.slots import Slot
from tether._session import Session
from tether.abc import RemoteSession
from tether.exceptions import OutcomeUnknownError


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Locator:
    def __init__(self, runtime: Runtime, calls: Calls) -> None:
        self._runtime = runtime
        self._calls = calls

    @staticmethod
    def can_locate(slot: Slot) -> bool:
        caps = slot.provider.capabilities
        return bool(caps.find or caps.list)

    async def locate(self, slot: Slot, record: Session) -> RemoteSession | None:
        """
        The remote session of *record*, or ``None`` if the service has none.

        By tether's tag where the service keeps it (``find``), else in the
        service's list: tagged with the record's id, or the only unclaimed
        session the provider :meth:`~tether.abc.Provider.matches` to it.
        """
        provider = slot.provider
        budget = self._runtime.budget()
        if provider.capabilities.find:
            return await self._calls.call(
                slot,
                lambda: provider.find(record.id),
                operation="find",
                budget=budget,
                session_id=record.id,
            )
        listed = await self._calls.call(
            slot, provider.list, operation="list", budget=budget, session_id=record.id
        )
        return await self.match_listed(slot, record, listed)

    async def match_listed(
        self, slot: Slot, record: Session, listed: Sequence[RemoteSession]
    ) -> RemoteSession | None:
        """
        *record*'s session among *listed*: tagged with its id, or the only
        unclaimed one that matches it.

        Raises:
            OutcomeUnknownError: Several unclaimed sessions match: one of them
                may be the record's (a create whose answer was lost more than
                once), and which cannot be told. Not "absent": creating again
                would only add one more.
        """
        found = await self.candidates(slot, record, listed)
        if len(found) > 1:
            ids = ", ".join(r.id for r in found)
            msg = (
                f"{len(found)} unclaimed {slot.name} sessions match this create "
                f"({ids}); which is its cannot be told, so none is taken and "
                "none is made again (reconcile settles it)"
            )
            raise OutcomeUnknownError(
                msg, provider=slot.name, operation="create", session_id=record.id
            )
        return found[0] if found else None

    async def candidates(
        self, slot: Slot, record: Session, listed: Sequence[RemoteSession]
    ) -> list[RemoteSession]:
        """
        The sessions among *listed* that may be *record*'s: the one tagged with
        its id, else every unclaimed untagged one that matches it, oldest first
        where the service says.
        """
        for remote in listed:
            if remote.tether_id == record.id:
                return [remote]
        claimed = {
            r.remote_id
            for r in await self._runtime.store.list(provider=slot.name)
            if r.remote_id
        }
        found = [
            r
            for r in listed
            if r.tether_id is None
            and r.id not in claimed
            and slot.provider.matches(record, r)
        ]
        return sorted(
            found,
            key=lambda r: (r.created_at is None, r.created_at or _EPOCH),
        )
