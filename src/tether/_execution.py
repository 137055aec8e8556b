"""
Running code in a session: the operation code-execution providers share.

A sandbox VM and a kernel on this machine both run code and answer with its
output. The value and the two protocols live here, once, so code written
against one provider runs on the other; :mod:`tether.abc` publishes them.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs


if TYPE_CHECKING:
    from tether._session import Session


__all__ = ["CodeExecutor", "ExecutingHandle", "ExecutionResult"]


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


@attrs.frozen(kw_only=True)
class ExecutionResult:
    """
    The output of one execution in a session.

    A failing program is not an error: its traceback is in :attr:`stderr`.

    Attributes:
        stdout: What the program printed.
        stderr: What it printed on stderr (tracebacks included).
        execution_time: Seconds the execution took, if known.
        cpu_time: CPU seconds it used, if known.
        raw: What the provider got besides (the service's response body, the
            kernel's reply).

    .. versionadded:: 0.1.0
       In :mod:`tether.abc`; ``tether_sandbox.ExecutionResult`` is the same class.
    """

    stdout: str = ""
    stderr: str = ""
    execution_time: float | None = None
    cpu_time: float | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen, repr=False)


@runtime_checkable
class CodeExecutor(Protocol):
    """
    A provider that runs code in its sessions.

    ``sandbox`` (InstaVM) and ``local`` (a kernel on this machine) implement
    it; the conformance suite checks every provider that does. State carries
    across executions in one session.

    .. versionadded:: 0.1.0
    """

    async def execute(
        self,
        session: Session,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
    ) -> ExecutionResult:
        """
        Run *code* in *language* (or a shell *command*) in the session, and
        return its output once it finished or ran out of *exec_timeout* seconds.
        """
        ...


@runtime_checkable
class ExecutingHandle(Protocol):
    """
    The session handle of a :class:`CodeExecutor`: ``execute`` on the session.

    .. versionadded:: 0.1.0
    """

    async def execute(
        self,
        code: str | None = None,
        *,
        command: str | None = None,
        language: str = "python",
        exec_timeout: int = 60,
    ) -> ExecutionResult:
        """
        :meth:`CodeExecutor.execute` on this handle's session.
        """
        ...
