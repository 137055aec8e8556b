"""
The local provider: sessions that are Jupyter kernels on this machine.
"""

from __future__ import annotations

import builtins
import contextlib
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import attrs
import httpx

from tether import Health, HealthStatus, Session, SessionState
from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    ExecutionResult,
    Operation,
    Provider,
    RemoteSession,
    get_logger,
)
from tether.exceptions import (
    InvalidParameterError,
    PermanentProviderError,
    ProviderUnavailableError,
    RemoteNotFoundError,
)
from tether_local import _sandbox
from tether_local._config import LocalConfig
from tether_local._handle import LocalHandle, SyncLocalHandle
from tether_local._kernel import Kernel, KernelDiedError, KernelTimeoutError
from tether_local._memory import describe, read_kills
from tether_local._params import parse_create, parse_execute
from tether_local._records import Record, RecordBook, group_alive, kill_session


__all__ = ["LocalProvider"]

logger = get_logger("tether.local")

_NAME = "local"
_MIB = 1024 * 1024


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class LocalProvider(Provider[LocalConfig]):
    """
    Interpreter sessions on this machine: a Jupyter kernel per session, in a
    bubblewrap sandbox, with a watchdog that ends it at its deadline.

    Create parameters: ``memory_mb`` (the memory of all the session's
    processes together, and each one's data limit; default 1024),
    ``processes`` (default 256), ``open_files`` (default 1024),
    ``network`` (default ``False``) and ``isolation`` (``"bwrap"``, the
    default, or ``"none"``: no security boundary at all).

    Sessions are recorded in :attr:`LocalConfig.state_dir`, so another
    manager on the machine finds, lists and reconciles them.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        get=True,
        list=True,
        find=True,
        default_lifetime=3600.0,
        min_lifetime=1.0,
        max_lifetime=7 * 86400.0,
        ping_interval=10.0,
    )
    operations: ClassVar[Mapping[str, Operation]] = {
        "execute": Operation(idempotent=False),
    }
    handle_class: ClassVar[type[LocalHandle]] = LocalHandle
    sync_handle_class: ClassVar[type[SyncLocalHandle]] = SyncLocalHandle
    config_class: ClassVar[type[LocalConfig]] = LocalConfig

    def __init__(
        self,
        config: LocalConfig,
        *,
        client: httpx.AsyncClient,
        name: str,
        clock: Any = None,
    ) -> None:
        super().__init__(config, client=client, name=name, clock=clock)
        self._book = RecordBook(config.state_dir)
        self._kernels: dict[str, Kernel] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def client_options(cls, config: LocalConfig) -> ClientOptions:
        # Nothing goes over HTTP: the client the manager builds stays unused.
        return ClientOptions(base_url="http://local.invalid", timeout=config.timeout)

    def credential_id(self) -> str | None:
        return None

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        parsed = parse_create(params)
        _sandbox.check_paths(self.config)
        if parsed["isolation"] == "bwrap" and _sandbox.bwrap_path(self.config) is None:
            msg = (
                f"local: bubblewrap ({self.config.bwrap!r}) is not installed, so "
                "the session cannot be isolated; install it (Debian: bubblewrap) "
                "or pass isolation='none', which is no security boundary"
            )
            raise InvalidParameterError(
                msg,
                field="isolation",
                value="bwrap",
                allowed="'none' without bubblewrap",
                provider=self.name,
            )
        return parsed

    # -- the lifecycle -----------------------------------------------------

    async def create(self, request: CreateRequest) -> RemoteSession:
        """
        Start a kernel (and its watchdog) and wait until it answers.
        """
        params = dict(request.params) or self.parse_create({})
        lifetime = request.lifetime or self.capabilities.default_lifetime or 3600.0
        record = await anyio.to_thread.run_sync(
            self._start, request.tether_id, dict(request.labels), params, lifetime
        )
        logger.info(
            "tether.local.started",
            provider=self.name,
            session_id=request.tether_id,
            remote_id=record.id,
        )
        return self._remote(record, include_deadline=False)

    def _start(
        self,
        tether_id: str,
        labels: dict[str, str],
        params: dict[str, Any],
        lifetime: float,
    ) -> Record:
        remote_id = "l" + secrets.token_hex(6)
        uid = _sandbox.kernel_uid(self.config, params)
        runtime, workdir, connection = _sandbox.prepare(self.config, remote_id, uid)
        now = time.time()
        try:
            argv = _sandbox.kernel_argv(
                self.config,
                params,
                runtime=runtime,
                workdir=workdir,
                connection=connection,
                remote_id=remote_id,
                uid=uid,
            )
            child = _sandbox.spawn(
                self.config,
                remote_id=remote_id,
                argv=argv,
                runtime=runtime,
                workdir=workdir,
                deadline=now + lifetime,
                memory_limit=params["memory_mb"] * _MIB,
            )
        except BaseException:
            shutil.rmtree(runtime, ignore_errors=True)
            raise
        record = Record(
            id=remote_id,
            tether_id=tether_id,
            labels=labels,
            params=params,
            pgid=child.pid,
            created_at=now,
            deadline=now + lifetime,
            runtime=str(runtime),
            workdir=str(workdir),
        )
        self._children[remote_id] = child
        # Written before the kernel answers: a manager that dies now leaves a
        # session that others can find (and its watchdog ends it regardless).
        self._book.write(record)
        try:
            kernel = self._connect(record)
            kernel.wait_ready(self.config.start_timeout)
        except BaseException as exc:
            tail = self._log_tail(record)
            self._end(record)
            if isinstance(exc, KernelDiedError):
                msg = f"local: the kernel did not start: {exc}{tail}"
                raise PermanentProviderError(
                    msg, provider=self.name, operation="create"
                ) from exc
            if isinstance(exc, KernelTimeoutError):
                msg = f"local: {exc}; the session was ended"
                raise ProviderUnavailableError(
                    msg, provider=self.name, operation="create"
                ) from exc
            raise
        return record

    @staticmethod
    def _log_tail(record: Record) -> str:
        try:
            lines = (Path(record.runtime) / "kernel.log").read_text().splitlines()
        except OSError:
            return ""
        return ("; its log ends: " + " | ".join(lines[-3:])) if lines else ""

    def _died(self, record: Record) -> str | None:
        ended = record.ended()
        if ended is not None:
            return ended
        if not group_alive(record.pgid):
            return "the session's processes are gone"
        return None

    def _connect(self, record: Record) -> Kernel:
        kernel = self._kernels.get(record.id)
        if kernel is None:
            kernel = Kernel(record.connection_file, died=lambda: self._died(record))
            self._kernels[record.id] = kernel
        return kernel

    def _end(self, record: Record) -> None:
        kernel = self._kernels.pop(record.id, None)
        if kernel is not None:
            kernel.close()
        kill_session(record)
        child = self._children.pop(record.id, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        shutil.rmtree(record.runtime, ignore_errors=True)
        self._book.delete(record.id)

    def _remote(
        self, record: Record, *, include_deadline: bool = True
    ) -> RemoteSession:
        ended = self._died(record)
        return RemoteSession(
            id=record.id,
            raw_state="running" if ended is None else f"ended: {ended}",
            state=SessionState.ACTIVE if ended is None else SessionState.LOST,
            expires_at=_ts(record.deadline) if include_deadline else None,
            tether_id=record.tether_id,
            created_at=_ts(record.created_at),
            labels=record.labels,
            data={
                "pgid": record.pgid,
                "workdir": record.workdir,
                "deadline": record.deadline,
            },
        )

    def _record(self, session: Session) -> Record | None:
        return self._book.read(session.remote_id) if session.remote_id else None

    async def ping(self, session: Session) -> Health:
        """
        The watchdog's word if the session ended, else the kernel's heartbeat.
        """
        record = self._record(session)
        if record is None:
            return Health(status=HealthStatus.GONE, raw_state="no record")
        ended = await anyio.to_thread.run_sync(self._died, record)
        if ended is not None:
            return Health(status=HealthStatus.GONE, raw_state=f"ended: {ended}")
        kernel = self._connect(record)
        beating = await anyio.to_thread.run_sync(kernel.heartbeat)
        if not beating:
            ended = await anyio.to_thread.run_sync(self._died, record)
            if ended is not None:
                return Health(status=HealthStatus.GONE, raw_state=f"ended: {ended}")
            return Health(
                status=HealthStatus.DEGRADED,
                raw_state="no heartbeat",
                detail="the kernel did not answer its heartbeat",
            )
        kills = read_kills(record.memory_file)
        return Health(
            status=HealthStatus.ALIVE,
            raw_state="running",
            detail=f"last kill at the memory cap: {describe(kills[-1])}"
            if kills
            else None,
        )

    async def close(self, session: Session) -> None:
        """
        Kill the session's processes and remove its directory; gone is fine.
        """
        record = self._record(session)
        if record is None:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._end, record)
        logger.info(
            "tether.local.ended",
            provider=self.name,
            session_id=session.id,
            remote_id=record.id,
        )

    async def get(self, session: Session) -> RemoteSession | None:
        record = self._record(session)
        return None if record is None else self._remote(record)

    async def list(self) -> Sequence[RemoteSession]:
        """
        The live sessions in the state directory. Those that ended (their
        watchdog ended them, or they died) are swept: their records and
        directories go.
        """
        return await anyio.to_thread.run_sync(self._sweep)

    def _sweep(self) -> Sequence[RemoteSession]:
        live: builtins.list[RemoteSession] = []
        for record in self._book.all():
            if self._died(record) is None:
                live.append(self._remote(record))
            else:
                self._end(record)
        return live

    async def find(self, tether_id: str) -> RemoteSession | None:
        for record in self._book.all():
            if record.tether_id == tether_id:
                return self._remote(record)
        return None

    async def aclose(self) -> None:
        # Sessions outlive the provider (their watchdogs end them); the
        # sockets to their kernels do not.
        kernels, self._kernels = list(self._kernels.values()), {}
        for kernel in kernels:
            await anyio.to_thread.run_sync(kernel.close)

    # -- work in a session -----------------------------------------------

    async def execute(
        self,
        session: Session,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: float = 60,
    ) -> ExecutionResult:
        """
        Run code (or a shell *command*, in the working directory) in the
        session's kernel and return its output.

        State carries across executions. A program that fails is not an
        error: read :attr:`~tether.abc.ExecutionResult.stderr`. Past *exec_timeout*
        seconds (or when the caller is cancelled) the kernel is interrupted:
        the execution ends with ``KeyboardInterrupt`` and the session lives
        on. Each stream keeps :attr:`LocalConfig.max_output_chars`; more is
        cut with a marker. A process the memory cap killed meanwhile (the
        session held more than ``memory_mb``) is named in ``stderr`` and in
        ``raw["memory_kills"]``.

        Args:
            session: A live local session.
            code: Source code in *language*.
            command: A shell command instead of *code*.
            language: ``"python"``, or ``"bash"`` to run *code* as a command.
            exec_timeout: Seconds before the kernel is interrupted.

        Raises:
            InvalidParameterError: Bad arguments; nothing ran.
            RemoteNotFoundError: The kernel died (a memory limit, a crash):
                the next ping makes the session LOST, with the reason.
        """
        source, shell, timeout = parse_execute(code, command, language, exec_timeout)
        record = self._record(session)
        if record is None:
            msg = f"local: session {session.remote_id} is not on this machine"
            raise RemoteNotFoundError(
                msg, provider=self.name, operation="execute", session_id=session.id
            )
        kernel = self._connect(record)
        stop = threading.Event()
        started = time.time()
        try:
            result = await anyio.to_thread.run_sync(
                lambda: kernel.execute(
                    source,
                    shell=shell,
                    timeout=timeout,
                    cap=self.config.max_output_chars,
                    stop=stop,
                ),
                abandon_on_cancel=True,
            )
        except KernelDiedError as exc:
            msg = f"local: the kernel died: {exc}"
            raise RemoteNotFoundError(
                msg, provider=self.name, operation="execute", session_id=session.id
            ) from exc
        except KernelTimeoutError as exc:
            msg = f"local: {exc}"
            raise ProviderUnavailableError(
                msg, provider=self.name, operation="execute", session_id=session.id
            ) from exc
        finally:
            # Cancelled: the worker thread interrupts the kernel and returns.
            stop.set()
        return self._with_kills(record, result, since=started)

    @staticmethod
    def _with_kills(
        record: Record, result: ExecutionResult, *, since: float
    ) -> ExecutionResult:
        """
        *result*, naming the processes the memory cap killed since *since*.
        """
        kills = [kill for kill in read_kills(record.memory_file) if kill["at"] >= since]
        if not kills:
            return result
        notes = "".join(f"\n[tether: {describe(kill)}]\n" for kill in kills)
        return attrs.evolve(
            result,
            stderr=result.stderr + notes,
            raw={**result.raw, "memory_kills": [dict(kill) for kill in kills]},
        )
