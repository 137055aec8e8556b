"""
The contracts that plugins implement: providers and stores.

A provider adapts one service to tether's lifecycle. It is a class registered in
the ``tether.providers`` entry-point group::

    [project.entry-points."tether.providers"]
    sandbox = "tether_sandbox:SandboxProvider"

The manager builds the provider's config (validated before any network call), one
:class:`httpx.AsyncClient` from :meth:`Provider.client_options`, and then the provider
itself. The manager owns the client and the provider's lifetime; retries, failover,
admission and expiry are the manager's: a provider only talks to its service and
classifies what it hears into :mod:`tether.exceptions`.
"""

from __future__ import annotations

import abc
import collections
import email.utils
import math
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Protocol, TypeVar

import attrs
import httpx

from tether._execution import CodeExecutor, ExecutingHandle, ExecutionResult
from tether._handle import Operation, SessionHandle, SyncSessionHandle
from tether._log import TetherLogger, get_logger
from tether._redact import (
    MaskedURL,
    Secret,
    declare_secret_keys,
    mask_url,
    remember_secrets,
)
from tether._session import Health, Session, SessionState, _frozen_mapping, _to_utc
from tether._validators import number
from tether.exceptions import (
    AuthError,
    ConflictError,
    InvalidParameterError,
    NotSupportedError,
    OutcomeUnknownError,
    PermanentProviderError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
)


if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "API_VERSION",
    "Capabilities",
    "ClientOptions",
    "CodeExecutor",
    "CreateRequest",
    "ExecutingHandle",
    "ExecutionResult",
    "Instrumentation",
    "Operation",
    "Provider",
    "ProviderConfig",
    "RemoteSession",
    "SessionHandle",
    "Store",
    "SyncSessionHandle",
    "TetherLogger",
    "get_logger",
    "parse_retry_after",
    "send",
]

# Statuses that say a request reached the service but its answer was lost
# (a timeout, a bad gateway, a gateway timeout).
_LOST_ANSWER = frozenset({408, 502, 504})

# Documented here, where plugin authors meet them.
TetherLogger.__module__ = __name__
Operation.__module__ = __name__
SessionHandle.__module__ = __name__
SyncSessionHandle.__module__ = __name__
ExecutionResult.__module__ = __name__
CodeExecutor.__module__ = __name__
ExecutingHandle.__module__ = __name__

#: The plugin API version this tether implements. A provider declares the version
#: it was written for in :attr:`Provider.api_version`; a mismatch refuses to load.
API_VERSION = 1


@attrs.frozen(kw_only=True)
class Capabilities:
    """
    What a provider's service can do; the manager plans around it.

    The conformance suite checks every claim: a provider that says it cannot
    update must raise :class:`~tether.exceptions.NotSupportedError` on update.

    Attributes:
        update: Sessions can be changed in place.
        renew: Lifetimes can be extended.
        get: One session can be fetched by id.
        list: The service lists sessions (used by reconcile).
        find: A session can be found by tether's id (tags, metadata), so a create
            whose outcome is unknown can be checked instead of repeated.
        server_ttl: The service ends sessions by itself at their lifetime.
        default_lifetime: Seconds, when the service has a default lifetime.
        min_lifetime: The shortest lifetime, in seconds, the service accepts.
        max_lifetime: The longest lifetime, in seconds, the service accepts.
        max_sessions_per_credential: How many live sessions one credential may
            hold (Morpheus: 1), enforced by the manager's admission control.
        ping_interval: The default seconds between health pings. Expensive
            pings declare a long one.
    """

    update: bool = False
    renew: bool = False
    get: bool = False
    list: bool = False
    find: bool = False
    server_ttl: bool = False
    default_lifetime: float | None = None
    min_lifetime: float | None = None
    max_lifetime: float | None = None
    max_sessions_per_credential: int | None = None
    ping_interval: float = 30.0


@attrs.frozen(kw_only=True)
class ProviderConfig:
    """
    Base class of provider configs: frozen, validated, secrets as :class:`Secret`.

    Subclass it with the service's fields. The manager builds configs from
    keyword arguments, a mapping, or ``TETHER_<PROVIDER>_<FIELD>`` environment
    variables, converting strings by each field's declared type; validators run
    before any network call.

    Attributes:
        base_url: Where the service lives.
        timeout: Seconds for each HTTP request (a network timeout, distinct from
            any session lifetime).
        ping_interval: Seconds between health pings; ``None`` takes the
            provider's default from its capabilities.
    """

    base_url: str
    timeout: float = attrs.field(default=30.0, validator=number(gt=0))
    ping_interval: float | None = attrs.field(
        default=None,
        validator=number(gt=0, optional=True),
    )

    def __attrs_post_init__(self) -> None:
        # A password in the URL's userinfo stays out of the config's repr
        # (subclasses inherit this; one of their own should call it).
        url = getattr(self, "base_url", None)
        if isinstance(url, str) and not isinstance(url, MaskedURL):
            masked = mask_url(url)
            if masked is not url:
                object.__setattr__(self, "base_url", masked)


ConfigT = TypeVar("ConfigT", bound=ProviderConfig)


@attrs.frozen(kw_only=True)
class ClientOptions:
    """
    How the manager should build a provider's :class:`httpx.AsyncClient`.
    """

    base_url: str
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    timeout: float = 30.0


@attrs.frozen(kw_only=True)
class CreateRequest:
    """
    What the manager asks a provider to create.

    Attributes:
        tether_id: tether's id for the session; tag the remote session with it
            where the service allows, so it can be found again.
        params: The provider's validated parameters (from :meth:`Provider.parse_create`).
        labels: The user's labels.
        lifetime: Seconds the session should live, if the user or the provider's
            default set one.
    """

    tether_id: str
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    lifetime: float | None = None


@attrs.frozen(kw_only=True)
class RemoteSession:
    """
    What a provider reports about one session on its service.

    Attributes:
        id: The service's id.
        raw_state: The service's own word for the state.
        state: The tether state it maps to (``ACTIVE`` unless the service says
            otherwise).
        expires_at: The deadline the service reports, if any.
        tether_id: tether's id, when the service keeps our tag (lists, find).
        data: Provider data to keep on the session (JSON-like, no secrets).
        created_at: When the service made it, if it says (reconcile's grace
            period for orphans needs it).
        labels: The user's labels, when the service keeps them (a session
            adopted by reconcile gets them); empty if it does not.
    """

    id: str
    raw_state: str | None = None
    state: SessionState = SessionState.ACTIVE
    expires_at: datetime | None = attrs.field(default=None, converter=_to_utc)
    tether_id: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    created_at: datetime | None = attrs.field(default=None, converter=_to_utc)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    operation: str,
    session_id: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """
    Send one request, turning transport failures into tether's errors.

    For clients of a service that are not a :class:`Provider` themselves (a
    provider's typed API client); :meth:`Provider.request` builds on it and
    maps error statuses too. Whether the request was sent decides the error:
    a request that never left is safe to repeat, one without an answer is not.

    Raises:
        ProviderUnavailableError: The request was not sent (connect failure).
        OutcomeUnknownError: It was sent but no answer came.
    """
    # What client.request() takes for sending rather than building.
    auth = kwargs.pop("auth", httpx.USE_CLIENT_DEFAULT)
    follow_redirects = kwargs.pop("follow_redirects", httpx.USE_CLIENT_DEFAULT)
    try:
        response = await client.send(
            _build_request(client, method, url, kwargs),
            auth=auth,
            follow_redirects=follow_redirects,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        msg = f"{provider} could not be reached: {type(exc).__name__}"
        raise ProviderUnavailableError(
            msg, provider=provider, operation=operation, session_id=session_id
        ) from exc
    except (
        httpx.TimeoutException,
        httpx.NetworkError,
        httpx.RemoteProtocolError,
    ) as exc:
        msg = f"{provider} did not answer: {type(exc).__name__}"
        raise OutcomeUnknownError(
            msg, provider=provider, operation=operation, session_id=session_id
        ) from exc
    # The body is read and the stream closed. httpx's response and its stream
    # refer to each other, a cycle only the garbage collector frees, and the
    # transport's objects for the request hang off it: cut it, as httpx does
    # for a closed response it unpickles, so they go as soon as the response.
    response.stream = httpx.ByteStream(response.content)
    return response


# What the short way of building a request understands; anything else goes to
# httpx's own build_request.
_PLAIN_KWARGS: frozenset[str] = frozenset({"json", "content", "headers"})


def _build_request(
    client: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, Any]
) -> httpx.Request:
    """
    The request ``client.request(method, url, **kwargs)`` would send.

    For the plain case (a path under the base URL, a body and headers, no
    cookies or default query parameters), the request is built directly: httpx's ``build_request`` parses
    and merges the URL three times and copies every default, which is a fifth
    of what a request costs on the fast transport. Both ways make the same
    request: the base URL joined with the path, the client's headers updated
    by the call's, its timeout in the extensions (``tests/test_requests.py``).
    """
    base = client.base_url
    if (
        not url.startswith("/")
        or url.startswith("//")
        or not _PLAIN_KWARGS.issuperset(kwargs)
        or base.query
        or client.params
        or client.cookies
    ):
        return client.build_request(method, url, **kwargs)
    headers = client.headers
    if kwargs.get("headers"):
        headers = httpx.Headers(headers)
        headers.update(kwargs["headers"])
    return httpx.Request(
        method,
        # httpx keeps the base URL with a trailing slash; the path brings its own.
        str(base).removesuffix("/") + url,
        headers=headers,
        json=kwargs.get("json"),
        content=kwargs.get("content"),
        extensions={"timeout": client.timeout.as_dict()},
    )


def parse_retry_after(value: str | None) -> float | None:
    """
    Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# How many secret values one provider holds for masking by value.
_SEEN_SECRETS: Final = 1024


class Provider(abc.ABC, Generic[ConfigT]):
    """
    The contract every provider implements.

    Required: :attr:`capabilities`, :attr:`config_class`, :meth:`client_options`,
    :meth:`create`, :meth:`ping` and :meth:`close`. Optional operations default to
    raising :class:`~tether.exceptions.NotSupportedError`; declare the ones you
    implement in :attr:`capabilities`.

    Providers never retry: they classify. :meth:`request` and
    :meth:`error_from_response` turn transport failures and HTTP statuses into
    tether's errors; override :meth:`error_from_response` for a service's own
    error envelope.
    """

    #: The plugin API version the provider was written for.
    api_version: ClassVar[int] = API_VERSION
    #: What the service can do.
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The operations the provider offers on a live session, by name, and
    #: whether each is safe to repeat; its handle's methods run them.
    operations: ClassVar[Mapping[str, Operation]] = {}
    #: The handle :meth:`tether.SessionManager.session` gives for this provider's
    #: sessions when asked by class (a subclass of :class:`SessionHandle` with
    #: a method per operation).
    handle_class: ClassVar[type[SessionHandle[Any]]] = SessionHandle
    #: Its twin for :class:`tether.SyncSessionManager`.
    sync_handle_class: ClassVar[type[SyncSessionHandle[Any]]] = SyncSessionHandle
    #: Create parameters whose values are secrets (an environment, a key): the
    #: session's stored record keeps their names only, never their values.
    #: Values that are :class:`~tether.Secret` are masked whatever their name.
    secret_params: ClassVar[frozenset[str]] = frozenset()
    #: Header names whose values are secrets (an ``X-BB-API-Key``), besides
    #: ``Authorization`` and ``X-API-Key``: the values the client sends under
    #: them are masked by value wherever tether redacts, and the names are
    #: masked in any mapping (a request log, an error body).
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    #: The filters :meth:`search` takes besides ``labels`` (a relay's
    #: ``user_ip``), each passed to the service where it can filter.
    search_filters: ClassVar[frozenset[str]] = frozenset()
    #: Field names in the service's answers whose values are secrets (a
    #: ``signingKey``): masked wherever they appear (errors, stored data,
    #: events), and each value :meth:`json` reads is then masked by value too.
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    #: The provider's config class.
    config_class: ClassVar[type[ProviderConfig]] = ProviderConfig
    #: Whether a session handed back to a pool may go to its next user as it
    #: is, whatever ran on it (a service whose sessions keep no state between
    #: uses). By default not: :meth:`reset` decides, and a session it cannot
    #: vouch for is closed and replaced.
    reusable: ClassVar[bool] = False

    def __init__(
        self,
        config: ConfigT,
        *,
        client: httpx.AsyncClient,
        name: str,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.name = name
        #: The manager's time source (seconds since the epoch): use it for
        #: deadlines, so tests with a ManualClock see the same time.
        self.clock: Callable[[], float] = clock or time.time
        # Secrets seen on the wire, held so they stay masked by value.
        self._seen_secrets: collections.deque[Secret] = collections.deque(
            maxlen=_SEEN_SECRETS
        )
        self._seen_secrets.extend(self._header_secrets(client))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_secret_keys(cls.secret_headers | cls.secret_fields)

    @classmethod
    def _header_secrets(cls, client: httpx.AsyncClient) -> list[Secret]:
        headers = getattr(client, "headers", None)
        if headers is None:
            return []
        found = remember_secrets(dict(headers.items()), cls.secret_headers)
        # "Bearer abc…", "token abc…": the credential alone, too.
        found += [
            Secret(part)
            for secret in list(found)
            if len(parts := secret.reveal().split(None, 1)) == 2  # noqa: PLR2004
            for part in parts[1:]
        ]
        return found

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"

    # -- set-up ------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def client_options(cls, config: ConfigT) -> ClientOptions:
        """
        How to build this provider's HTTP client (base URL, auth headers, timeout).
        """

    def credential_id(self) -> str | None:
        """
        A non-secret fingerprint of the credential, for per-credential admission.

        The default is a short hash of every :class:`Secret` in the config.
        """
        import hashlib  # noqa: PLC0415

        secrets = [
            v.reveal()
            for v in attrs.asdict(self.config, recurse=False).values()
            if isinstance(v, Secret)
        ]
        if not secrets:
            return None
        digest = hashlib.sha256("\0".join(secrets).encode()).hexdigest()
        return f"{self.name}:{digest[:16]}"

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate create parameters, before any network call.

        Return them normalised and JSON-like; they are stored on the session (so
        never put secrets in them). Raise
        :class:`~tether.exceptions.InvalidParameterError` naming the field and what
        is allowed. The default accepts no parameters.
        """
        if params:
            from tether.exceptions import InvalidParameterError  # noqa: PLC0415

            field = next(iter(params))
            msg = f"{self.name} takes no parameter {field!r}"
            raise InvalidParameterError(msg, field=field, provider=self.name)
        return {}

    def parse_update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate update changes, before any network call.
        """
        return dict(changes)

    def lifetime_for(
        self, lifetime: float | None, params: Mapping[str, Any]
    ) -> float | None:
        """
        The lifetime in seconds the session will get, or ``None`` for none.

        The default takes the user's, else the service's default, checked against
        :attr:`capabilities`' bounds.
        """
        caps = self.capabilities
        if lifetime is None:
            return caps.default_lifetime
        from tether.exceptions import InvalidParameterError  # noqa: PLC0415

        lo, hi = caps.min_lifetime, caps.max_lifetime
        if not math.isfinite(lifetime) or lifetime <= 0:
            msg = f"{self.name}: lifetime must be a positive number of seconds, not {lifetime}"
            raise InvalidParameterError(
                msg, field="lifetime", value=lifetime, provider=self.name
            )
        if (lo is not None and lifetime < lo) or (hi is not None and lifetime > hi):
            msg = f"{self.name}: lifetime must be between {lo} and {hi} seconds, not {lifetime}"
            raise InvalidParameterError(
                msg,
                field="lifetime",
                value=lifetime,
                allowed=f"{lo} to {hi} seconds",
                provider=self.name,
            )
        return lifetime

    # -- the lifecycle -----------------------------------------------------

    @abc.abstractmethod
    async def create(self, request: CreateRequest) -> RemoteSession:
        """
        Create one session on the service.
        """

    @abc.abstractmethod
    async def ping(self, session: Session) -> Health:
        """
        Ask the service how the session is.

        Return :class:`~tether.Health` with ``GONE`` or ``EXPIRED`` when the service
        says so; raise for failures to ask (they count as failed pings).
        """

    @abc.abstractmethod
    async def close(self, session: Session) -> None:
        """
        End the session on the service. Idempotent: already gone is success.
        """

    async def update(
        self, session: Session, changes: Mapping[str, Any]
    ) -> RemoteSession:
        """
        Change the session in place.
        """
        raise self.not_supported("update")

    async def renew(self, session: Session, lifetime: float) -> RemoteSession:
        """
        Extend the session's lifetime by *lifetime* seconds from now.
        """
        raise self.not_supported("renew")

    async def get(self, session: Session) -> RemoteSession | None:
        """
        Fetch the session from the service; ``None`` when it does not exist.
        """
        raise self.not_supported("get")

    async def list(self) -> Sequence[RemoteSession]:
        """
        Every session the service has for this credential.
        """
        raise self.not_supported("list")

    def parse_search(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """
        Validate :meth:`search` filters, before any network call.

        The default accepts the names in :attr:`search_filters`, as given;
        override to check their values. Raise
        :class:`~tether.exceptions.InvalidParameterError` naming the filter.
        """
        unknown = sorted(set(filters) - self.search_filters)
        if unknown:
            known = ", ".join(sorted(self.search_filters | {"labels"}))
            msg = (
                f"{self.name}: unknown search filter {', '.join(map(repr, unknown))}; "
                f"known: {known}"
            )
            raise InvalidParameterError(msg, field=unknown[0], provider=self.name)
        return dict(filters)

    async def search(
        self, labels: Mapping[str, str], filters: Mapping[str, Any]
    ) -> Sequence[RemoteSession]:
        """
        The service's sessions whose labels include *labels* and that match
        the provider's own *filters* (validated by :meth:`parse_search`).

        The default lists every session (:meth:`list`) and keeps those whose
        :attr:`RemoteSession.labels` include *labels*; override it to let the
        service filter (a query parameter), where it can.
        """
        return [
            remote
            for remote in await self.list()
            if all(remote.labels.get(k) == v for k, v in labels.items())
        ]

    async def find(self, tether_id: str) -> RemoteSession | None:
        """
        Find the session tagged with tether's id, or ``None``.
        """
        raise self.not_supported("find")

    def matches(self, session: Session, remote: RemoteSession) -> bool:
        """
        Whether the untagged *remote* could be *session*'s, by its content.

        For services that keep no tag of tether's, so a create whose answer was
        lost can still be found in :meth:`list`: the manager adopts a remote
        session only when exactly one unclaimed candidate matches. The default
        says no.
        """
        return False

    async def reset(self, session: Session) -> bool:
        """
        Make a used session clean for its next user (for pools); return
        whether it now is.

        A pool calls it for a session handed back after operations ran on it,
        unless the provider is :attr:`reusable`. The default cannot vouch for
        any session and returns ``False``: the pool closes it and creates
        another. Raising counts as ``False``.
        """
        return False

    async def aclose(self) -> None:
        """
        Release what the provider holds besides the client (which the manager closes).
        """

    async def __aenter__(self) -> Provider[ConfigT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- helpers for implementations -----------------------------------------

    def set_capabilities(self, **changes: Any) -> Capabilities:
        """
        Change what this instance declares, from its class's :attr:`capabilities`:
        for what depends on the config or the service (a plan's session limit,
        a gateway without per-key sessions)::

            def __init__(self, config, *, client, name):
                super().__init__(config, client=client, name=name)
                self.set_capabilities(
                    max_sessions_per_credential=config.sessions_per_key
                )

        The manager reads ``provider.capabilities`` each time it plans, so a
        change holds from the next operation on. With no *changes*, the class's
        own declaration applies again. Returns what this instance now declares.
        """
        declared = type(self).capabilities
        if changes:
            # An instance attribute shadows the ClassVar, for this instance only.
            self.__dict__["capabilities"] = attrs.evolve(declared, **changes)
        else:
            self.__dict__.pop("capabilities", None)
        return self.capabilities

    def not_supported(self, operation: str) -> NotSupportedError:
        """
        The error to raise for an operation the service lacks.
        """
        return NotSupportedError(
            f"{self.name} cannot {operation}", provider=self.name, operation=operation
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        session_id: str | None = None,
        ok: Sequence[int] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """
        Send one request, turning transport failures and error statuses into errors.

        Args:
            method: The HTTP method.
            url: A URL relative to the client's base URL.
            operation: What this is for (``"create"``, ``"ping"``), for errors.
            session_id: The session concerned, for errors.
            ok: Statuses to return rather than raise, besides 2xx (e.g. 404 on close).
            **kwargs: Passed to :meth:`httpx.AsyncClient.request`.

        Raises:
            ProviderUnavailableError: The request was not sent (connect failure).
            OutcomeUnknownError: It was sent but no answer came.
            ProviderError: The status was an error; see :meth:`error_from_response`.
        """
        response = await send(
            self.client,
            method,
            url,
            provider=self.name,
            operation=operation,
            session_id=session_id,
            **kwargs,
        )
        if response.is_success or response.status_code in ok:
            return response
        raise self.error_from_response(
            response, operation=operation, session_id=session_id
        )

    def json(self, response: httpx.Response, *, operation: str) -> Any:
        """
        The response's JSON body, or a transient error if it is not JSON.

        A create the service accepted (2xx) whose body cannot be read is an
        :class:`~tether.exceptions.OutcomeUnknownError`: the session may exist,
        so it must be found, not created again.
        """
        try:
            payload = response.json()
        except ValueError as exc:
            msg = f"{self.name} answered {response.status_code} with a body that is not JSON"
            cls = (
                OutcomeUnknownError
                if operation == "create" and response.is_success
                else ProviderUnavailableError
            )
            raise cls(
                msg,
                provider=self.name,
                operation=operation,
                status_code=response.status_code,
                body=response.text[:500],
            ) from exc
        if self.secret_fields:
            self._seen_secrets.extend(remember_secrets(payload, self.secret_fields))
        return payload

    def error_from_response(
        self,
        response: httpx.Response,
        *,
        operation: str,
        session_id: str | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> ProviderError:
        """
        Map an error response onto tether's errors by status code.

        Override to read a service's own envelope, then call this with the
        ``message`` and ``code`` found there.
        """
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:500]
        text = message or f"{self.name} answered {status} to {operation}"
        kwargs: dict[str, Any] = {
            "provider": self.name,
            "operation": operation,
            "session_id": session_id,
            "status_code": status,
            "body": body,
            "code": code,
        }
        cls: type[ProviderError]
        if status == 429:  # noqa: PLR2004
            return RateLimitedError(
                text,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                **kwargs,
            )
        if status in (401, 403):
            cls = AuthError
        elif status in (404, 410):
            cls = RemoteNotFoundError
        elif status == 409:  # noqa: PLR2004
            cls = ConflictError
        elif status in (400, 422):
            cls = RequestRejectedError
        elif operation == "create" and status in _LOST_ANSWER:
            # A gateway's timeout or bad gateway after forwarding: the service
            # may have carried the create out.
            cls = OutcomeUnknownError
        elif status >= 500 or status in (408, 425):  # noqa: PLR2004
            cls = ProviderUnavailableError
        else:
            cls = PermanentProviderError
        return cls(text, **kwargs)


class Store(Protocol):
    """
    Where the manager keeps its session records: the seam for durable stores.

    Records are :class:`~tether.Session` values and hold no secrets. Every write
    bumps ``version``; :meth:`update` refuses a record whose version is stale, so
    two writers never silently overwrite each other.

    Optional: a store may also define
    ``async def count_live(self, provider: str, credential: str) -> int``, how
    many live (creating, active or degraded) sessions of *provider* hold the
    credential fingerprint *credential*: the number ``insert(...,
    credential_limit=...)`` compares with its limit. Warm pools ask it before
    each refill and, while the credential is full, every
    ``AdmissionPolicy.poll_interval`` (half a second by default). A
    store without it works as before: the pool counts a ``list(provider=...)``
    instead, which costs a listing every time. The stores tether ships have it.

    .. versionchanged:: Unreleased
       The optional ``count_live()``.
    """

    async def insert(
        self, session: Session, *, credential_limit: int | None = None
    ) -> Session:
        """
        Add a new record atomically, and return it as stored.

        With *credential_limit*, refuse (raising
        :class:`~tether.exceptions.AdmissionError`) when the session's credential
        already holds that many live sessions of the same provider.
        """
        ...

    async def update(self, session: Session, *, fence: int | None = None) -> Session:
        """
        Replace a record if its version is current; return it as stored.

        Args:
            session: The new record; its ``version`` must be the stored one.
            fence: The fencing token of the writer's lease (see :meth:`claim`);
                the write is refused when a newer token has been issued since.

        Raises:
            SessionNotFoundError: There is no such record.
            StaleRecordError: Someone else wrote it since it was read.
            LeaseLostError: *fence* is older than the session's current token.
        """
        ...

    async def claim(self, session_id: str, owner: str, ttl: float) -> int | None:
        """
        Take or extend the lease on a session's background work (pings, expiry).

        Exactly one live owner holds a session's lease at a time. The lease lapses
        *ttl* seconds after the last successful claim, and then any owner may take
        it over.

        Returns:
            The fencing token when *owner* holds the lease: it is the same while
            the owner keeps the lease, and larger every time the lease changes
            hands. ``None`` when another owner's lease is live.
        """
        ...

    async def release(self, session_id: str, owner: str) -> None:
        """
        Give up *owner*'s lease on the session, if it holds it.
        """
        ...

    async def get(self, session_id: str) -> Session | None:
        """
        One record, or ``None``.
        """
        ...

    async def list(
        self,
        *,
        provider: str | None = None,
        states: Sequence[SessionState] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Session]:
        """
        Records matching every filter given.
        """
        ...

    async def delete(self, session_id: str) -> None:
        """
        Forget a record (a no-op when absent).
        """
        ...

    async def aclose(self) -> None:
        """
        Release the store's resources.
        """
        ...


class Instrumentation(Protocol):
    """
    Hooks for tracing and metrics (OpenTelemetry lives behind this seam).

    The manager calls :meth:`operation` around every public lifecycle operation
    and :meth:`instrument_client` once per provider client it builds. Absent an
    instrumentation, nothing is imported and nothing is measured.
    """

    def operation(
        self, name: str, *, provider: str | None, session_id: str | None
    ) -> AbstractContextManager[MutableMapping[str, Any]]:
        """
        A context around one operation (``"create"``, ``"ping"``, ...).

        The manager puts ``outcome`` (``"ok"`` or the error's class name) and,
        once known, ``session_id`` and ``provider`` into the yielded mapping.
        """
        ...

    def instrument_client(self, provider: str, client: httpx.AsyncClient) -> None:
        """
        Attach per-request hooks to a provider's HTTP client.
        """
        ...

    def on_event(self, event: Any) -> None:
        """
        Receive every lifecycle event (for metrics), synchronously.
        """
        ...
