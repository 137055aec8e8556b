"""
The sandbox session handle: code execution as methods of the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether.abc import SessionHandle, SyncSessionHandle
from tether_sandbox._session_values import (
    AppURL,
    EgressPolicy,
    SessionInfo,
    SessionUsage,
)
from tether_sandbox._types import Execution, ExecutionResult


if TYPE_CHECKING:
    from tether_sandbox._provider import SandboxProvider  # noqa: F401


class SandboxHandle(SessionHandle["SandboxProvider"]):
    """
    A live sandbox session::

        async with manager.session(SandboxProvider, vcpu_count=2) as sb:
            out = await sb.execute("print(1)")
            assert out.stdout == "1\\n"

    Each method is the provider's operation of the same name, on this session,
    under the manager's guarantees (refused once the session ended, retried
    where safe, traced).
    """

    __slots__ = ()

    async def execute(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
        vault_ids: Sequence[str] | None = None,
    ) -> ExecutionResult:
        """
        Run code (or a shell *command*) in the VM and return its output; see
        :meth:`SandboxProvider.execute <tether_sandbox.SandboxProvider.execute>`.
        """
        return await self.run(
            "execute",
            lambda s: self.provider.execute(
                s,
                code,
                command=command,
                language=language,
                exec_timeout=exec_timeout,
                vault_ids=vault_ids,
            ),
        )

    async def execute_async(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
        vault_ids: Sequence[str] | None = None,
    ) -> str:
        """
        Start an execution and return its task id, for :meth:`wait`.
        """
        return await self.run(
            "execute_async",
            lambda s: self.provider.execute_async(
                s,
                code,
                command=command,
                language=language,
                exec_timeout=exec_timeout,
                vault_ids=vault_ids,
            ),
        )

    async def execution(self, task_id: str) -> Execution:
        """
        One poll of an asynchronous execution.
        """
        return await self.run("execution", lambda _: self.provider.execution(task_id))

    async def wait(
        self, task_id: str, *, poll_interval: float = 0.5
    ) -> ExecutionResult:
        """
        Wait for an asynchronous execution and return its output. You own the
        deadline (``with anyio.fail_after(120): ...``).
        """
        return await self.run(
            "wait",
            lambda _: self.provider.wait_execution(
                task_id, poll_interval=poll_interval
            ),
        )

    async def session_info(self) -> SessionInfo:
        """
        The service's record of the session; see
        :meth:`SandboxProvider.session_info <tether_sandbox.SandboxProvider.session_info>`.
        """
        return await self.run("session_info", self.provider.session_info)

    async def usage(self) -> SessionUsage:
        """
        What the session used, as the service reports it.
        """
        return await self.run("usage", self.provider.usage)

    async def app_url(self, port: int = 80) -> AppURL:
        """
        A public URL for *port* inside the VM.
        """
        return await self.run("app_url", lambda s: self.provider.app_url(s, port))

    async def upload(self, path: str, data: bytes) -> None:
        """
        Write *data* to the file *path* in the VM (overwriting it).
        """
        await self.run("upload", lambda s: self.provider.upload(s, path, data))

    async def download(self, path: str) -> bytes:
        """
        The content of the file *path* in the VM.
        """
        return await self.run("download", lambda s: self.provider.download(s, path))

    async def egress(self) -> EgressPolicy:
        """
        The session's egress policy.
        """
        return await self.run("egress", self.provider.egress)

    async def set_egress(self, policy: EgressPolicy) -> EgressPolicy:
        """
        Replace the session's egress policy; return it as the service has it.
        """
        return await self.run(
            "set_egress", lambda s: self.provider.set_egress(s, policy)
        )


class SyncSandboxHandle(SyncSessionHandle[SandboxHandle]):
    """
    :class:`SandboxHandle` for synchronous code::

        with tether.SyncSessionManager() as manager:
            with manager.session(SandboxProvider) as sb:
                out = sb.execute("print(1)")
    """

    __slots__ = ()

    def execute(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
        vault_ids: Sequence[str] | None = None,
    ) -> ExecutionResult:
        """
        See :meth:`SandboxHandle.execute`.
        """
        return self.call(
            self.handle.execute,
            code,
            command=command,
            language=language,
            exec_timeout=exec_timeout,
            vault_ids=vault_ids,
        )

    def execute_async(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
        vault_ids: Sequence[str] | None = None,
    ) -> str:
        """
        See :meth:`SandboxHandle.execute_async`.
        """
        return self.call(
            self.handle.execute_async,
            code,
            command=command,
            language=language,
            exec_timeout=exec_timeout,
            vault_ids=vault_ids,
        )

    def execution(self, task_id: str) -> Execution:
        """
        See :meth:`SandboxHandle.execution`.
        """
        return self.call(self.handle.execution, task_id)

    def wait(self, task_id: str, *, poll_interval: float = 0.5) -> ExecutionResult:
        """
        See :meth:`SandboxHandle.wait`.
        """
        return self.call(self.handle.wait, task_id, poll_interval=poll_interval)

    def session_info(self) -> SessionInfo:
        """
        See :meth:`SandboxHandle.session_info`.
        """
        return self.call(self.handle.session_info)

    def usage(self) -> SessionUsage:
        """
        See :meth:`SandboxHandle.usage`.
        """
        return self.call(self.handle.usage)

    def app_url(self, port: int = 80) -> AppURL:
        """
        See :meth:`SandboxHandle.app_url`.
        """
        return self.call(self.handle.app_url, port)

    def upload(self, path: str, data: bytes) -> None:
        """
        See :meth:`SandboxHandle.upload`.
        """
        self.call(self.handle.upload, path, data)

    def download(self, path: str) -> bytes:
        """
        See :meth:`SandboxHandle.download`.
        """
        return self.call(self.handle.download, path)

    def egress(self) -> EgressPolicy:
        """
        See :meth:`SandboxHandle.egress`.
        """
        return self.call(self.handle.egress)

    def set_egress(self, policy: EgressPolicy) -> EgressPolicy:
        """
        See :meth:`SandboxHandle.set_egress`.
        """
        return self.call(self.handle.set_egress, policy)
