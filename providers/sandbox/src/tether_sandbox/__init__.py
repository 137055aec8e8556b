"""
tether provider for InstaVM sandbox VM sessions.

Registered as ``sandbox`` in the ``tether.providers`` entry-point group. The
emulator lives in :mod:`tether_sandbox.emulator` (extra ``emulator``).
"""

from tether_sandbox._config import DEFAULT_BASE_URL, SandboxConfig
from tether_sandbox._handle import SandboxHandle, SyncSandboxHandle
from tether_sandbox._provider import SandboxProvider
from tether_sandbox._session_values import (
    AppURL,
    EgressPolicy,
    SessionInfo,
    SessionUsage,
)
from tether_sandbox._types import Execution, ExecutionResult, SandboxStatus


__all__ = [
    "DEFAULT_BASE_URL",
    "AppURL",
    "EgressPolicy",
    "Execution",
    "ExecutionResult",
    "SandboxConfig",
    "SandboxHandle",
    "SandboxProvider",
    "SandboxStatus",
    "SessionInfo",
    "SessionUsage",
    "SyncSandboxHandle",
]
