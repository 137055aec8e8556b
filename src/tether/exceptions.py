"""
The one exception tree of tether.

Everything tether raises on purpose derives from :class:`TetherError`::

    TetherError
    ├── ConfigError (ValueError)                 bad input or configuration, never retried
    │   └── InvalidParameterError                one parameter, named, with what is allowed
    ├── ProviderNotFoundError (LookupError)      no provider of that name is installed
    ├── ProviderLoadError                        a plugin failed to import or clashes
    │   └── ProviderValidationError              it imported, but is not a valid provider
    ├── NotSupportedError                        the service cannot do that
    ├── SessionNotFoundError (LookupError)       tether tracks no session with that id
    ├── SessionEndedError                        the session can no longer be used
    │   ├── SessionClosedError
    │   ├── SessionExpiredError
    │   └── SessionLostError
    ├── InvalidTransitionError                   a state change the lifecycle forbids
    ├── StaleRecordError                         a store record changed since it was read
    │   └── LeaseLostError                       a newer lease holder fenced this writer off
    ├── AdmissionError                           a per-credential session limit is reached
    ├── PoolExhaustedError                       no pooled session came free in time
    ├── StoreError                               the session store failed an operation
    │   ├── StoreUnavailableError                unreachable, timed out, busy: worth retrying
    │   ├── StoreClosedError (RuntimeError)      misuse: the store was used after aclose()
    │   └── SessionExistsError (ValueError)      misuse: insert() of an id already stored
    └── ProviderError                            the service answered badly, or not at all
        ├── TransientProviderError               worth retrying
        │   ├── ProviderUnavailableError         connect errors, timeouts, 5xx
        │   │   └── OutcomeUnknownError          the request may have been carried out
        │   └── RateLimitedError                 429, with ``retry_after``
        └── PermanentProviderError               retrying will not help
            ├── AuthError                        401 / 403: bad or insufficient credentials
            ├── ConflictError                    409-like: e.g. one session per API key
            ├── RemoteNotFoundError              the service does not know the session
            └── RequestRejectedError             400 / 422: the service refused the input

Every error carries its context in keyword-only attributes. Bodies kept on
:class:`ProviderError` are redacted before they are stored, and a
:class:`StoreError` names its store without secrets (never a Redis URL's
password), so an exception can be logged or shown as it is. A store error
chains the backend's own exception as its ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


__all__ = [
    "AdmissionError",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "InvalidParameterError",
    "InvalidTransitionError",
    "LeaseLostError",
    "NotSupportedError",
    "OutcomeUnknownError",
    "PermanentProviderError",
    "PoolExhaustedError",
    "ProviderError",
    "ProviderLoadError",
    "ProviderNotFoundError",
    "ProviderUnavailableError",
    "ProviderValidationError",
    "RateLimitedError",
    "RemoteNotFoundError",
    "RequestRejectedError",
    "SessionClosedError",
    "SessionEndedError",
    "SessionExistsError",
    "SessionExpiredError",
    "SessionLostError",
    "SessionNotFoundError",
    "StaleRecordError",
    "StoreClosedError",
    "StoreError",
    "StoreUnavailableError",
    "TetherError",
    "TransientProviderError",
]


class TetherError(Exception):
    """
    Base class of every error tether raises on purpose.
    """


class ConfigError(TetherError, ValueError):
    """
    Bad configuration or input, detected before any network call.

    Misuse is never retried.
    """

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class InvalidParameterError(ConfigError):
    """
    One parameter has a value the service does not accept.

    Attributes:
        field: The parameter's name as the user passes it.
        value: The rejected value (never a secret: secrets are not validated by value).
        allowed: A human description of what is accepted, e.g. ``"1, 2, 4, 6 or 8"``.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str,
        value: object = None,
        allowed: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.field = field
        self.value = value
        self.allowed = allowed


class ProviderNotFoundError(TetherError, LookupError):
    """
    No provider of that name is registered or installed.
    """

    def __init__(
        self, message: str, *, name: str, available: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.name = name
        self.available = tuple(available)


class ProviderLoadError(TetherError):
    """
    A provider plugin could not be loaded.

    Raised only when that provider is asked for: one broken plugin never breaks the
    others. The cause is chained.

    Attributes:
        name: The provider name.
        entry_point: The entry point's value, e.g. ``"tether_sandbox:SandboxProvider"``.
        distributions: The distributions involved (two when names clash).
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        entry_point: str | None = None,
        distributions: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.name = name
        self.entry_point = entry_point
        self.distributions = tuple(distributions)


class ProviderValidationError(ProviderLoadError):
    """
    A plugin loaded, but the object is not a provider tether can use.

    Attributes:
        obj: What was loaded.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        obj: object,
        entry_point: str | None = None,
        distributions: Sequence[str] = (),
    ) -> None:
        super().__init__(
            message, name=name, entry_point=entry_point, distributions=distributions
        )
        self.obj = obj


class NotSupportedError(TetherError):
    """
    The provider's service cannot do this (e.g. renew a sandbox VM's lifetime).
    """

    def __init__(self, message: str, *, provider: str, operation: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.operation = operation


class SessionNotFoundError(TetherError, LookupError):
    """
    tether tracks no session with this id.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class SessionEndedError(TetherError):
    """
    The session is in a terminal state and can no longer be used.
    """

    def __init__(
        self, message: str, *, session_id: str, provider: str, state: str
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.provider = provider
        self.state = state


class SessionClosedError(SessionEndedError):
    """
    The session was closed.
    """


class SessionExpiredError(SessionEndedError):
    """
    The session reached its deadline.
    """


class SessionLostError(SessionEndedError):
    """
    The service no longer has the session, or stopped answering for it.
    """


class InvalidTransitionError(TetherError):
    """
    A state change that the session lifecycle forbids.
    """

    def __init__(
        self, message: str, *, session_id: str, source: str, target: str
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.source = source
        self.target = target


class StaleRecordError(TetherError):
    """
    A store refused a write: the record changed since it was read.
    """

    def __init__(
        self, message: str, *, session_id: str, expected: int, actual: int
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class LeaseLostError(StaleRecordError):
    """
    A store refused a write fenced by a lease that has since changed hands.

    The worker that held the lease paused too long (or lost its connection);
    another worker owns the session's background work now.
    """


class AdmissionError(TetherError):
    """
    A credential already holds as many live sessions as its provider allows.

    Raised by the ``reject`` admission policy, or when ``wait`` runs out of time.
    The service never saw a create.
    """

    def __init__(
        self, message: str, *, provider: str, credential: str | None, limit: int
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.credential = credential
        self.limit = limit


class PoolExhaustedError(TetherError):
    """
    A pool had no session to hand out within its ``timeout``: every one of
    its ``max_size`` sessions was in use (or the credential's session limit
    left no room for another). Nothing was created for the caller.

    .. versionadded:: 0.2
    """

    def __init__(
        self,
        message: str,
        *,
        pool: str,
        provider: str,
        max_size: int,
        waited: float,
    ) -> None:
        super().__init__(message)
        self.pool = pool
        self.provider = provider
        self.max_size = max_size
        self.waited = waited


class StoreError(TetherError):
    """
    The session store failed an operation, or refused it.

    The backend's own exception (``sqlite3.Error``, ``redis.RedisError``,
    ``OSError``) is chained as ``__cause__``.

    Attributes:
        store: What the store is, without secrets: a Redis URL without its
            password, or the SQLite file's path.
        operation: The store method that failed (``"insert"``, ``"get"``, ...).

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, *, store: str, operation: str) -> None:
        super().__init__(message)
        self.store = store
        self.operation = operation


class StoreUnavailableError(StoreError):
    """
    The store could not be reached or did not answer in time.

    Redis refused the connection, dropped it, timed out, was loading, or no
    pooled connection came free in time; SQLite could not open the file, or
    another process held the lock past ``busy_timeout``. A later attempt may
    succeed. A write that failed this way may or may not have been carried out
    when the connection dropped after it was sent.

    .. versionadded:: 0.1
    """


class StoreClosedError(StoreError, RuntimeError):
    """
    The store was used after ``aclose()``: a bug in the caller, never retried.

    .. versionadded:: 0.1
    """


class SessionExistsError(StoreError, ValueError):
    """
    ``insert()`` was given a session whose id the store holds already.

    Attributes:
        session_id: The id.

    .. versionadded:: 0.1
    """

    def __init__(
        self, message: str, *, store: str, operation: str, session_id: str
    ) -> None:
        super().__init__(message, store=store, operation=operation)
        self.session_id = session_id


class ProviderError(TetherError):
    """
    The service answered with an error, or could not be reached.

    Attributes:
        provider: The provider name.
        session_id: The session concerned, if any.
        operation: What was attempted (``"create"``, ``"ping"``, ...).
        status_code: The HTTP status the service answered, if any.
        body: The response body, parsed when it was JSON, with secrets redacted.
        code: The service's own error code, when its envelope has one.
        failover_causes: Every failover candidate's error, when all failed.
    """

    #: Whether a retry may succeed. Subclasses fix it; the retry policy reads it.
    retryable: bool = False
    # When every candidate of a failover failed: each candidate (its breaker
    # key) and its error, in the order tried. The error raised is the last
    # one; its notes list them all.
    failover_causes: tuple[tuple[str, BaseException], ...] = ()

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        operation: str | None = None,
        session_id: str | None = None,
        status_code: int | None = None,
        body: Any = None,
        code: str | None = None,
    ) -> None:
        # Imported here: the redaction helpers live with logging, which imports us.
        from tether._redact import redact, redact_text  # noqa: PLC0415

        # A service may quote a key back in its message: masked by value.
        super().__init__(redact_text(message))
        self.provider = provider
        self.operation = operation
        self.session_id = session_id
        self.status_code = status_code
        self.code = code
        self.body = redact(body)

    def __str__(self) -> str:
        base = super().__str__()
        parts = [f"provider={self.provider}"]
        if self.operation:
            parts.append(f"operation={self.operation}")
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.code:
            parts.append(f"code={self.code}")
        return f"{base} ({', '.join(parts)})"


class TransientProviderError(ProviderError):
    """
    A failure that a later attempt may not meet.
    """

    retryable = True


class ProviderUnavailableError(TransientProviderError):
    """
    The service could not be reached, timed out, or answered 5xx.
    """


class OutcomeUnknownError(ProviderUnavailableError):
    """
    The request was sent but no answer came: it may have been carried out.

    A create failing this way is never repeated blindly; tether asks the provider
    what exists, or keeps the intent for :meth:`tether.SessionManager.reconcile`.
    """


class RateLimitedError(TransientProviderError):
    """
    The service asked us to slow down (HTTP 429).

    Attributes:
        retry_after: Seconds to wait, from the ``Retry-After`` header, if given.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """
    A failure that retrying will not fix.
    """


class AuthError(PermanentProviderError):
    """
    The credentials are missing, malformed, wrong, or not allowed to do this.
    """


class ConflictError(PermanentProviderError):
    """
    The service refused because of existing state (e.g. one session per API key).
    """


class RemoteNotFoundError(PermanentProviderError):
    """
    The service does not know this session (any more).
    """


class RequestRejectedError(PermanentProviderError):
    """
    The service rejected the request's content (HTTP 400 or 422).
    """
