"""
The local session handle: code execution as a method of the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.abc import ExecutionResult, SessionHandle, SyncSessionHandle


if TYPE_CHECKING:
    from tether_local._provider import LocalProvider  # noqa: F401


class LocalHandle(SessionHandle["LocalProvider"]):
    """
    A live local session (a :class:`~tether.abc.ExecutingHandle`)::

        async with manager.session(LocalProvider, memory_mb=256) as sb:
            await sb.execute("x = 41")
            out = await sb.execute("print(x + 1)")
            assert out.stdout == "42\\n"
    """

    __slots__ = ()

    async def execute(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: float = 60,
    ) -> ExecutionResult:
        """
        Run code (or a shell *command*) in the session's kernel; see
        :meth:`LocalProvider.execute <tether_local.LocalProvider.execute>`.
        """
        return await self.run(
            "execute",
            lambda s: self.provider.execute(
                s,
                code,
                command=command,
                language=language,
                exec_timeout=exec_timeout,
            ),
        )


class SyncLocalHandle(SyncSessionHandle[LocalHandle]):
    """
    :class:`LocalHandle` for synchronous code.
    """

    __slots__ = ()

    def execute(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: float = 60,
    ) -> ExecutionResult:
        """
        See :meth:`LocalHandle.execute`.
        """
        return self.call(
            self.handle.execute,
            code,
            command=command,
            language=language,
            exec_timeout=exec_timeout,
        )
