"""
OpenTelemetry tracing and metrics for tether (the ``otel`` extra).

Install with ``pip install 'tether[otel]'`` and pass an instance to the manager::

    from tether.otel import OpenTelemetryInstrumentation

    async with tether.SessionManager(
        instrumentation=OpenTelemetryInstrumentation()
    ) as manager:
        ...

Without arguments it uses the global tracer and meter providers, so it follows
whatever OpenTelemetry set-up the application has. tether imports nothing from
OpenTelemetry unless this module is imported.

Spans:
    ``tether.<operation>`` (``tether.create``, ``tether.ping``, ``tether.update``,
    ``tether.renew``, ``tether.close``, ``tether.attach``) around each lifecycle
    operation, with ``tether.provider``, ``tether.session_id`` and
    ``tether.outcome`` (``"ok"`` or the error's class name). Inside them, one
    ``CLIENT`` span per HTTP request a provider sends, named by its method, with
    ``http.request.method``, ``url.full`` (credentials and secret query values
    masked), ``server.address``, ``http.response.status_code`` and
    ``tether.provider``.

Metrics:
    ``tether.session.active`` (gauge): sessions by ``tether.provider`` and
    ``tether.session.state``, as seen through lifecycle events;
    ``tether.session.time_to_expiry`` (gauge, s): per live session with a
    deadline (one series per session: ``tether.session_id``);
    ``tether.ping.duration`` (histogram, s); ``tether.operation.duration``
    (histogram, s) by ``tether.operation`` and ``tether.outcome``;
    ``tether.failovers`` (counter); ``tether.breaker.state`` (gauge: 0 closed,
    1 half-open, 2 open) by ``tether.breaker``.

    Pools, by ``tether.pool``: ``tether.pool.refills``,
    ``tether.pool.replaced``, ``tether.pool.recycled``, ``tether.pool.reset``
    and ``tether.pool.exhausted`` (counters); ``tether.pool.refill_lag``
    (histogram, s: from the pool falling short of ``min_idle`` to a refill);
    ``tether.pool.sessions`` (gauge) by ``tether.pool.state`` (``idle``,
    ``in_use``), as of the pool's latest event.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import attrs
import httpx


try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra
    msg = "tether.otel needs OpenTelemetry: pip install 'tether[otel]'"
    raise ImportError(msg) from exc

from tether._events import BreakerState, Event, EventKind
from tether._redact import _is_secret_key
from tether._session import SessionState


__all__ = ["OpenTelemetryInstrumentation"]

_SCOPE: Final = "tether"
_REDACTED: Final = "REDACTED"
# Query parameters OpenTelemetry's semantic conventions ask to mask, besides
# tether's own secret keys.
_SECRET_QUERY_KEYS: Final = frozenset(
    {"awsaccesskeyid", "signature", "sig", "x-goog-signature", "key", "code"}
)
_BREAKER_VALUES: Final = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}
# The operations that give a session its own span.
_SESSION_ROOTS: Final = frozenset({"create", "connect", "attach"})
_COUNTED_STATES: Final = frozenset(
    {
        SessionState.CREATING,
        SessionState.ACTIVE,
        SessionState.DEGRADED,
        SessionState.CLOSING,
    }
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("tether")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


def _redact_url(url: httpx.URL | str) -> str:
    """
    The URL with user info and secret-looking query values replaced by ``REDACTED``.
    """
    url = httpx.URL(url)
    if url.userinfo:
        url = url.copy_with(username=_REDACTED, password=_REDACTED)
    if url.query:
        pairs = parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
        masked = [
            (
                k,
                _REDACTED
                if _is_secret_key(k) or k.lower() in _SECRET_QUERY_KEYS
                else v,
            )
            for k, v in pairs
        ]
        url = url.copy_with(query=urlencode(masked, safe="").encode("ascii"))
    return str(url)


@attrs.define
class _PingCell:
    """
    Whether an event already measured the ping this operation performs.
    """

    recorded: bool = False


# Open HTTP spans of the current operation, ended when it ends if no response
# came (event hooks see no failed requests).
_OPEN_HTTP: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "tether_otel_open_http", default=None
)
_PING: contextvars.ContextVar[_PingCell | None] = contextvars.ContextVar(
    "tether_otel_ping", default=None
)


class OpenTelemetryInstrumentation:
    """
    Traces and metrics of a :class:`~tether.SessionManager`, through OpenTelemetry.

    Implements :class:`tether.abc.Instrumentation`; pass it as
    ``SessionManager(instrumentation=...)``. One instance may serve several
    managers.

    Args:
        tracer_provider: Where spans go; the global provider by default.
        meter_provider: Where metrics go; the global provider by default.
        clock: The time source for ``tether.session.time_to_expiry``: the
            manager's clock (the default is wall-clock time, like the manager's).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        version = _version()
        self._tracer = trace.get_tracer(
            _SCOPE, version, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
        self._clock = clock
        # Metric callbacks run on the exporter's thread; events on the loop's.
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, SessionState, float | None]] = {}
        self._seen: set[tuple[str, SessionState]] = set()
        self._breakers: dict[tuple[str, str], BreakerState] = {}
        self._http_spans: weakref.WeakKeyDictionary[httpx.Request, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._clients: weakref.WeakSet[httpx.AsyncClient] = weakref.WeakSet()
        # Each live session's own span (the one that created or took it
        # over): its later operations are that span's children.
        self._session_spans: dict[str, trace.SpanContext] = {}
        self._ping_duration = meter.create_histogram(
            "tether.ping.duration",
            unit="s",
            description="How long a health ping took.",
        )
        self._operation_duration = meter.create_histogram(
            "tether.operation.duration",
            unit="s",
            description="How long a lifecycle operation took, retries included.",
        )
        self._failovers = meter.create_counter(
            "tether.failovers",
            unit="{failover}",
            description="Sessions moved or created on another candidate.",
        )
        self._pool_counters = {
            kind: meter.create_counter(
                f"tether.pool.{name}",
                unit="{session}",
                description=description,
            )
            for kind, name, description in (
                (EventKind.POOL_REFILLED, "refills", "Sessions a pool created ahead."),
                (
                    EventKind.POOL_REPLACED,
                    "replaced",
                    "Idle sessions a pool found unfit and closed.",
                ),
                (
                    EventKind.POOL_RECYCLED,
                    "recycled",
                    "Sessions handed back to a pool and closed.",
                ),
                (
                    EventKind.POOL_RESET,
                    "reset",
                    "Sessions handed back to a pool, reset and reused.",
                ),
                (
                    EventKind.POOL_EXHAUSTED,
                    "exhausted",
                    "Callers a pool had no session for in time.",
                ),
            )
        }
        self._refill_lag = meter.create_histogram(
            "tether.pool.refill_lag",
            unit="s",
            description="From a pool falling short of min_idle to a refill.",
        )
        self._pools: dict[str, tuple[int, int]] = {}
        meter.create_observable_gauge(
            "tether.pool.sessions",
            callbacks=[self._observe_pools],
            unit="{session}",
            description="A pool's idle and in-use sessions, as of its latest event.",
        )
        meter.create_observable_gauge(
            "tether.session.active",
            callbacks=[self._observe_sessions],
            unit="{session}",
            description="Sessions not yet ended, by provider and state.",
        )
        meter.create_observable_gauge(
            "tether.session.time_to_expiry",
            callbacks=[self._observe_expiry],
            unit="s",
            description="Seconds until a live session's deadline.",
        )
        meter.create_observable_gauge(
            "tether.breaker.state",
            callbacks=[self._observe_breakers],
            unit="1",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )

    def __repr__(self) -> str:
        return f"<OpenTelemetryInstrumentation sessions={len(self._sessions)}>"

    # -- operations -----------------------------------------------------------

    @contextlib.contextmanager
    def operation(
        self, name: str, *, provider: str | None, session_id: str | None
    ) -> Iterator[MutableMapping[str, Any]]:
        """
        A ``tether.<name>`` span around one operation; see :class:`tether.abc.Instrumentation`.
        """
        attributes: dict[str, Any] = {}
        initial = {"tether.operation": name}
        if provider is not None:
            initial["tether.provider"] = provider
        if session_id is not None:
            initial["tether.session_id"] = session_id
        open_http: list[Any] = []
        http_token = _OPEN_HTTP.set(open_http)
        ping = _PingCell() if name == "ping" else None
        ping_token = _PING.set(ping)
        started = time.perf_counter()
        error: BaseException | None = None
        context, links = self._parenting(name, session_id)
        with self._tracer.start_as_current_span(
            f"tether.{name}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=initial,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield attributes
            except BaseException as exc:
                error = exc
                raise
            finally:
                _PING.reset(ping_token)
                _OPEN_HTTP.reset(http_token)
                for http_span in open_http:
                    # A request that got no response: the error is the operation's.
                    http_span.set_status(Status(StatusCode.ERROR, "no response"))
                    http_span.end()
                elapsed = time.perf_counter() - started
                outcome = str(
                    attributes.get("outcome")
                    or ("ok" if error is None else type(error).__name__)
                )
                provider = attributes.get("provider") or provider
                session_id = attributes.get("session_id") or session_id
                span.set_attribute("tether.outcome", outcome)
                if provider is not None:
                    span.set_attribute("tether.provider", str(provider))
                if session_id is not None:
                    span.set_attribute("tether.session_id", str(session_id))
                if (
                    name in _SESSION_ROOTS
                    and error is None
                    and session_id is not None
                    and session_id not in self._session_spans
                ):
                    with self._lock:
                        self._session_spans[str(session_id)] = span.get_span_context()
                if isinstance(error, Exception):
                    span.record_exception(error)
                if outcome != "ok":
                    span.set_status(Status(StatusCode.ERROR, outcome))
                labels = {"tether.operation": name, "tether.outcome": outcome}
                if provider is not None:
                    labels["tether.provider"] = str(provider)
                self._operation_duration.record(elapsed, labels)
                if ping is not None and not ping.recorded:
                    self._ping_duration.record(
                        elapsed,
                        {
                            "tether.provider": str(provider or ""),
                            "tether.outcome": outcome,
                        },
                    )

    def _parenting(
        self, name: str, session_id: str | None
    ) -> tuple[Any, list[trace.Link]]:
        """
        Where an operation's span goes: a child of its session's span (with a
        link to the caller's span, if the caller is in another one), except
        background pings, which start their own trace linked to the session's.
        """
        own = self._session_spans.get(session_id) if session_id else None
        if own is None:
            return None, []
        if name == "ping":
            return None, [trace.Link(own)]
        caller = trace.get_current_span().get_span_context()
        links = (
            [trace.Link(caller)]
            if caller.is_valid and caller.span_id != own.span_id
            else []
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(own)), links

    # -- HTTP -----------------------------------------------------------------

    def instrument_client(self, provider: str, client: httpx.AsyncClient) -> None:
        """
        Add request and response hooks to *client*: one span per HTTP request.
        """
        if client in self._clients:
            return
        self._clients.add(client)

        async def on_request(request: httpx.Request) -> None:
            self._start_http(provider, request)

        async def on_response(response: httpx.Response) -> None:
            self._end_http(response)

        hooks = client.event_hooks
        hooks.setdefault("request", []).append(on_request)
        hooks.setdefault("response", []).append(on_response)
        client.event_hooks = hooks

    def _start_http(self, provider: str, request: httpx.Request) -> None:
        url = request.url
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "url.full": _redact_url(url),
            "url.scheme": url.scheme,
            "server.address": url.host,
            "tether.provider": provider,
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        span = self._tracer.start_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes
        )
        self._http_spans[request] = span
        open_http = _OPEN_HTTP.get()
        if open_http is not None:
            open_http.append(span)

    def _end_http(self, response: httpx.Response) -> None:
        span = self._http_spans.pop(response.request, None)
        if span is None:
            return
        open_http = _OPEN_HTTP.get()
        if open_http is not None and span in open_http:
            open_http.remove(span)
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        if status >= 400:  # noqa: PLR2004 -- client spans: 4xx and 5xx are errors
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # -- events and metrics ---------------------------------------------------

    def on_event(self, event: Event) -> None:
        """
        Update the metrics from one lifecycle event.
        """
        if event.kind is EventKind.FAILOVER:
            self._failovers.add(1, {"tether.provider": event.provider})
        counter = self._pool_counters.get(event.kind)
        if counter is not None:
            self._on_pool_event(event, counter)
        if event.kind in (
            EventKind.BREAKER_OPENED,
            EventKind.BREAKER_HALF_OPEN,
            EventKind.BREAKER_CLOSED,
        ):
            state = {
                EventKind.BREAKER_OPENED: BreakerState.OPEN,
                EventKind.BREAKER_HALF_OPEN: BreakerState.HALF_OPEN,
                EventKind.BREAKER_CLOSED: BreakerState.CLOSED,
            }[event.kind]
            key = str(event.data.get("breaker", event.provider))
            with self._lock:
                self._breakers[(event.provider, key)] = state
        if event.kind is EventKind.PINGED:
            latency = event.data.get("latency")
            if isinstance(latency, int | float):
                self._ping_duration.record(
                    float(latency),
                    {"tether.provider": event.provider, "tether.outcome": "ok"},
                )
                cell = _PING.get()
                if cell is not None:
                    cell.recorded = True
        session = event.session
        if session is None:
            return
        with self._lock:
            if session.state in _COUNTED_STATES:
                expires = (
                    session.expires_at.timestamp()
                    if session.expires_at is not None
                    else None
                )
                self._sessions[session.id] = (session.provider, session.state, expires)
                self._seen.add((session.provider, session.state))
            else:
                self._sessions.pop(session.id, None)
            if session.state.is_terminal:
                self._session_spans.pop(session.id, None)

    def _on_pool_event(self, event: Event, counter: Any) -> None:
        pool = str(event.data.get("pool", ""))
        attributes = {"tether.pool": pool, "tether.provider": event.provider}
        counter.add(1, attributes)
        lag = event.data.get("lag")
        if event.kind is EventKind.POOL_REFILLED and isinstance(lag, int | float):
            self._refill_lag.record(float(lag), attributes)
        idle, in_use = event.data.get("idle"), event.data.get("in_use")
        if isinstance(idle, int) and isinstance(in_use, int):
            with self._lock:
                self._pools[pool] = (idle, in_use)

    def _observe_pools(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            pools = sorted(self._pools.items())
        return [
            Observation(count, {"tether.pool": pool, "tether.pool.state": state})
            for pool, (idle, in_use) in pools
            for state, count in (("idle", idle), ("in_use", in_use))
        ]

    def _observe_sessions(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = dict.fromkeys(self._seen, 0)
            for provider, state, _ in self._sessions.values():
                counts[(provider, state)] += 1
        return [
            Observation(
                count,
                {"tether.provider": provider, "tether.session.state": state.value},
            )
            for (provider, state), count in sorted(counts.items())
        ]

    def _observe_expiry(self, options: CallbackOptions) -> Iterable[Observation]:
        now = self._clock()
        with self._lock:
            live = [
                (sid, provider, expires)
                for sid, (provider, _, expires) in self._sessions.items()
                if expires is not None
            ]
        return [
            Observation(
                expires - now,
                {"tether.provider": provider, "tether.session_id": sid},
            )
            for sid, provider, expires in live
        ]

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            breakers = sorted(self._breakers.items())
        return [
            Observation(
                _BREAKER_VALUES[state],
                {"tether.provider": provider, "tether.breaker": key},
            )
            for (provider, key), state in breakers
        ]
