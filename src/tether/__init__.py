"""
tether keeps remote sessions alive and honest across many backends.
"""

from __future__ import annotations

from typing import Any

from tether._clock import Clock, SystemClock
from tether._config import (
    AdmissionPolicy,
    Candidate,
    FailoverPolicy,
    HealthPolicy,
    RetryPolicy,
)
from tether._events import BreakerPolicy, BreakerState, Event, EventKind
from tether._lifecycle.pools import Pool, PoolSnapshot
from tether._manager import (
    ManagerSnapshot,
    ManagerStateError,
    ProviderSnapshot,
    ReconcileAction,
    ReconcileReport,
    SessionManager,
    SessionSnapshot,
)
from tether._redact import Secret, redact, redact_secrets, redact_text
from tether._registry import ProviderInfo, ProviderRegistry, register_provider
from tether._session import Health, HealthStatus, Session, SessionState
from tether._store import MemoryStore
from tether._sync import SyncPool, SyncSessionManager
from tether.exceptions import (
    AdmissionError,
    AuthError,
    ConfigError,
    ConflictError,
    InvalidParameterError,
    InvalidTransitionError,
    LeaseLostError,
    NotSupportedError,
    OutcomeUnknownError,
    PermanentProviderError,
    PoolExhaustedError,
    ProviderError,
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    ProviderValidationError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
    SessionClosedError,
    SessionEndedError,
    SessionExistsError,
    SessionExpiredError,
    SessionLostError,
    SessionNotFoundError,
    StaleRecordError,
    StoreClosedError,
    StoreError,
    StoreUnavailableError,
    TetherError,
    TransientProviderError,
)


__all__ = [
    "AdmissionError",
    "AdmissionPolicy",
    "AuthError",
    "BreakerPolicy",
    "BreakerState",
    "Candidate",
    "Clock",
    "ConfigError",
    "ConflictError",
    "Event",
    "EventKind",
    "FailoverPolicy",
    "Health",
    "HealthPolicy",
    "HealthStatus",
    "InvalidParameterError",
    "InvalidTransitionError",
    "LeaseLostError",
    "ManagerSnapshot",
    "ManagerStateError",
    "MemoryStore",
    "NotSupportedError",
    "OutcomeUnknownError",
    "PermanentProviderError",
    "Pool",
    "PoolExhaustedError",
    "PoolSnapshot",
    "ProviderError",
    "ProviderInfo",
    "ProviderLoadError",
    "ProviderNotFoundError",
    "ProviderRegistry",
    "ProviderSnapshot",
    "ProviderUnavailableError",
    "ProviderValidationError",
    "RateLimitedError",
    "ReconcileAction",
    "ReconcileReport",
    "RemoteNotFoundError",
    "RequestRejectedError",
    "RetryPolicy",
    "Secret",
    "Session",
    "SessionClosedError",
    "SessionEndedError",
    "SessionExistsError",
    "SessionExpiredError",
    "SessionLostError",
    "SessionManager",
    "SessionNotFoundError",
    "SessionSnapshot",
    "SessionState",
    "StaleRecordError",
    "StoreClosedError",
    "StoreError",
    "StoreUnavailableError",
    "SyncPool",
    "SyncSessionManager",
    "SystemClock",
    "TetherError",
    "TransientProviderError",
    "redact",
    "redact_secrets",
    "redact_text",
    "register_provider",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("tether")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
