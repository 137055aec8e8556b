"""
Values the sandbox provider returns for work inside a session.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import attrs

from tether.abc import ExecutionResult


if TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = ["Execution", "ExecutionResult", "SandboxStatus"]


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


@attrs.frozen(kw_only=True)
class Execution:
    """
    The state of one asynchronous execution (``/execute_async``).

    Attributes:
        task_id: The service's id for the execution.
        is_complete: Whether the output is final.
        result: The output, once complete.
    """

    task_id: str
    is_complete: bool
    result: ExecutionResult | None = None


@attrs.frozen(kw_only=True)
class SandboxStatus:
    """
    ``GET /v1/sessions/status/{id}``, parsed.

    Attributes:
        session_id: The service's session id.
        exists: Whether the service knows the session.
        vm_assigned: Whether a VM was ever spawned for it (the VM is lazy).
        vm_status: The VM's state (``"active"``, ``"killed"``, ...), ``None``
            without a VM.
        vm_id: The current VM's id; it changes when the VM is replaced.
        vm_alive: Whether the VM runs now.
        uptime_seconds: Seconds since the VM spawned.
        expires_in_seconds: Seconds until the VM dies (``0`` when dead,
            ``None`` without a VM).
        raw: The whole response body.
    """

    session_id: str
    exists: bool
    vm_assigned: bool = False
    vm_status: str | None = None
    vm_id: str | None = None
    vm_alive: bool = False
    uptime_seconds: float | None = None
    expires_in_seconds: float | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen, repr=False)

    @property
    def alive(self) -> bool:
        """
        The service's own health rule: ``exists and (not vm_assigned or vm_alive)``.
        """
        if self.vm_status == "killed" and not self.vm_alive:
            return False
        return self.exists and (not self.vm_assigned or self.vm_alive)
