"""
The logger and the stable names of tether's log events.

tether is quiet unless asked. It never configures logging: where the
application configured structlog, tether's events follow that configuration;
where it did not, they go to the standard library logger of the same name
(``tether``, ``tether.sandbox``, ...), which the application's ``logging``
config controls, and which prints nothing by default. Event names are part of
the public contract; new ones may appear, existing ones keep their meaning.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

from tether._redact import redact_secrets


# A library's logger hands records on and prints nothing itself: without this,
# Python's last-resort handler would print warnings to stderr.
logging.getLogger("tether").addHandler(logging.NullHandler())


def _render(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """
    An event as a stdlib record: ``name key=value ...``, and the fields as
    ``record.tether_event`` and ``record.tether_fields`` for structured handlers.
    """
    event = str(event_dict.pop("event", ""))
    fields = dict(event_dict)
    text = " ".join([event, *(f"{k}={v!r}" for k, v in fields.items())])
    return (text,), {"extra": {"tether_event": event, "tether_fields": fields}}


class TetherLogger:
    """
    One of tether's loggers: structlog's where the application configured
    structlog, else the standard library's logger of the same name.
    """

    __slots__ = ("_backends", "_context", "_name")

    def __init__(
        self,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        backends: tuple[Any, Any] | None = None,
    ) -> None:
        self._name = name
        self._context = context or {}
        # (structlog's logger, the stdlib logger wrapped): made once per name.
        self._backends = backends or (
            structlog.get_logger(name),
            structlog.wrap_logger(
                logging.getLogger(name),
                processors=[structlog.stdlib.filter_by_level, redact_secrets, _render],
                wrapper_class=structlog.stdlib.BoundLogger,
            ),
        )

    def __repr__(self) -> str:
        return f"<TetherLogger {self._name!r}>"

    def bind(self, **context: Any) -> TetherLogger:
        """
        A logger that adds *context* to every event.
        """
        return TetherLogger(
            self._name, {**self._context, **context}, backends=self._backends
        )

    def _log(self, method: str, event: str, fields: dict[str, Any]) -> None:
        structlogs, stdlib = self._backends
        target = structlogs if structlog.is_configured() else stdlib
        if self._context:
            fields = {**self._context, **fields}
        getattr(target, method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)


def get_logger(name: str) -> TetherLogger:
    """
    A logger for a provider or plugin (name it ``tether.<provider>``): quiet
    unless the application asked, like tether's own.
    """
    return TetherLogger(name)


logger: Final = get_logger("tether")

EVENT_SESSION_CREATING: Final = "tether.session.creating"
EVENT_SESSION_CREATED: Final = "tether.session.created"
EVENT_SESSION_CREATE_FAILED: Final = "tether.session.create_failed"
EVENT_SESSION_OUTCOME_UNKNOWN: Final = "tether.session.outcome_unknown"
EVENT_SESSION_ADOPTED: Final = "tether.session.adopted"
EVENT_SESSION_UPDATED: Final = "tether.session.updated"
EVENT_SESSION_RENEWED: Final = "tether.session.renewed"
EVENT_SESSION_PINGED: Final = "tether.session.pinged"
EVENT_SESSION_DEGRADED: Final = "tether.session.degraded"
EVENT_SESSION_RECOVERED: Final = "tether.session.recovered"
EVENT_SESSION_LOST: Final = "tether.session.lost"
EVENT_SESSION_EXPIRED: Final = "tether.session.expired"
EVENT_SESSION_CLOSING: Final = "tether.session.closing"
EVENT_SESSION_CLOSED: Final = "tether.session.closed"
EVENT_SESSION_CLOSE_FAILED: Final = "tether.session.close_failed"
EVENT_SESSION_KEPT: Final = "tether.session.kept"
EVENT_FAILOVER: Final = "tether.failover"
EVENT_RETRY_SCHEDULED: Final = "tether.retry_scheduled"
EVENT_BREAKER_OPENED: Final = "tether.breaker.opened"
EVENT_BREAKER_HALF_OPEN: Final = "tether.breaker.half_opened"
EVENT_BREAKER_CLOSED: Final = "tether.breaker.closed"
EVENT_PROVIDER_LOADED: Final = "tether.provider.loaded"
EVENT_PROVIDER_LOAD_FAILED: Final = "tether.provider.load_failed"
EVENT_MANAGER_STARTED: Final = "tether.manager.started"
EVENT_MANAGER_STOPPED: Final = "tether.manager.stopped"
EVENT_STORE_PRUNED: Final = "tether.store.pruned"
