"""
The deadline scheduler: one heap of due background jobs (pings, expiries,
keepalives, and the manager-wide sweep and prune), fed to a fixed pool of
workers, and the plan that puts a tracked session's jobs on it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from tether._config import Candidate, FailoverPolicy
from tether._lifecycle.runtime import Runtime, Tracked
from tether._lifecycle.slots import Slots
from tether._session import Session


#: Runs one due job: (kind, session id); ``"*"`` for manager-wide jobs.
JobRunner = Callable[[str, str], Awaitable[None]]

#: Jobs that belong to the manager, not to one session.
GLOBAL_JOBS = ("sweep", "prune")


class Scheduler:
    """
    Background jobs by deadline, on the manager's clock.

    Each job kind of a session has one live heap entry: rescheduling bumps its
    sequence number, and entries whose number is stale are skipped when they
    come due. Due jobs go to ``max_concurrent`` workers: a burst waits in the
    heap, not as tasks.
    """

    def __init__(self, runtime: Runtime, slots: Slots) -> None:
        self._runtime = runtime
        self._slots = slots
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count(1)
        # The live heap entry of each manager-wide job (0: none scheduled).
        self._global_seq = dict.fromkeys(GLOBAL_JOBS, 0)
        # The scope of the current nap (None before the first): made in the
        # event loop, so a manager can be built outside one.
        self._nap: anyio.CancelScope | None = None
        self._jobs_send: MemoryObjectSendStream[tuple[str, str]] | None = None
        self._random = random.Random()  # noqa: S311 -- jitter, not security

    def __len__(self) -> int:
        return len(self._heap)

    async def start(
        self, tg: anyio.abc.TaskGroup, run: JobRunner, *, workers: int
    ) -> None:
        """
        Run the scheduler and its *workers* in *tg* until it is cancelled.
        """
        send, receive = anyio.create_memory_object_stream[tuple[str, str]]()
        self._jobs_send = send

        async def worker() -> None:
            async for kind, session_id in receive:
                await run(kind, session_id)

        async def streams_closed() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                send.close()
                receive.close()

        tg.start_soon(streams_closed)
        for _ in range(workers):
            tg.start_soon(worker)
        await tg.start(self._run)

    # -- the heap ----------------------------------------------------------------

    def due(self, kind: str, session_id: str) -> int:
        """
        The sequence number of the live entry for this job (0: none).
        """
        if kind in self._global_seq:
            return self._global_seq[kind]
        tracked = self._runtime.tracked.get(session_id)
        return getattr(tracked, f"{kind}_seq") if tracked is not None else 0

    def _clear_due(self, kind: str, session_id: str) -> None:
        if kind in self._global_seq:
            self._global_seq[kind] = 0
        elif (tracked := self._runtime.tracked.get(session_id)) is not None:
            setattr(tracked, f"{kind}_seq", 0)

    def schedule(self, kind: str, session_id: str, at: float) -> None:
        """
        Run job *kind* for *session_id* at *at*, replacing any earlier plan.

        Only tracked sessions have background work: others are ignored.
        """
        seq = next(self._seq)
        if kind in self._global_seq:
            self._global_seq[kind] = seq
        else:
            tracked = self._runtime.tracked.get(session_id)
            if tracked is None:
                return
            setattr(tracked, f"{kind}_seq", seq)
        heapq.heappush(self._heap, (at, seq, kind, session_id))
        if self._heap[0][1] == seq:
            # Earlier than what the scheduler sleeps for: wake it up.
            if self._nap is not None:
                self._nap.cancel()

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        clock = self._runtime.clock
        while True:
            while self._heap:
                at, seq, kind, session_id = self._heap[0]
                if self.due(kind, session_id) != seq:
                    heapq.heappop(self._heap)
                    continue
                if at - clock.time() > 0:
                    break
                heapq.heappop(self._heap)
                self._clear_due(kind, session_id)
                assert self._jobs_send is not None  # noqa: S101
                await self._jobs_send.send((kind, session_id))
            # One cancel scope per nap, cancelled by schedule() when something
            # earlier arrives: no helper task, whatever the clock.
            delay = self._heap[0][0] - clock.time() if self._heap else math.inf
            with anyio.CancelScope() as self._nap:
                if delay == math.inf:
                    await anyio.sleep_forever()
                else:
                    await clock.sleep(delay)

    # -- a session's plan --------------------------------------------------------

    def track(
        self,
        session: Session,
        *,
        failover: FailoverPolicy | None = None,
        candidate: Candidate | None = None,
    ) -> None:
        """
        Watch *session* from now on: its pings, expiry and keepalive.
        """
        tracked_by_id = self._runtime.tracked
        tracked = tracked_by_id.get(session.id)
        if tracked is None:
            tracked = tracked_by_id[session.id] = Tracked(
                session_id=session.id, provider=session.provider
            )
        if failover is not None:
            tracked.failover = failover
            tracked.candidate = candidate
        tracked.state = session.state
        tracked.expires_at = (
            session.expires_at.timestamp() if session.expires_at else None
        )
        self.plan(session)

    def plan(self, session: Session) -> None:
        """
        Schedule the session's next ping, its expiry, and its keepalive.
        """
        if not session.state.is_live or session.id not in self._runtime.tracked:
            return
        now = self._runtime.clock.time()
        slot = self._slots.loaded(session.provider)
        if self._runtime.health.enabled and slot is not None:
            self.schedule("ping", session.id, now + self.jittered(slot.ping_interval))
        if session.expires_at is not None:
            deadline = session.expires_at.timestamp()
            self.schedule("expire", session.id, deadline)
            if session.keepalive and session.lifetime:
                margin = min(max(session.lifetime * 0.2, 1.0), session.lifetime / 2)
                self.schedule("renew", session.id, max(now, deadline - margin))

    def plan_ping(
        self, session_id: str, interval: float, *, since: float | None = None
    ) -> None:
        """
        The next ping of a tracked session, one jittered interval from now
        (or from *since*: when the ping that just ended began, so the time a
        ping takes does not stretch the interval). A ping that took longer
        than the interval is followed after a small gap (a tenth of the
        interval, at most 0.1 s), not at once: a slow service is not pinged
        back to back.
        """
        if self._runtime.health.enabled and session_id in self._runtime.tracked:
            now = self._runtime.clock.time()
            start = now if since is None else since
            at = max(start + self.jittered(interval), now + min(interval, 1.0) * 0.1)
            self.schedule("ping", session_id, at)

    def plan_expiry(self, session: Session) -> None:
        if session.id in self._runtime.tracked and session.expires_at is not None:
            self.schedule("expire", session.id, session.expires_at.timestamp())

    def jittered(self, interval: float) -> float:
        spread = interval * self._runtime.health.jitter
        return max(0.001, interval + self._random.uniform(-spread, spread))
