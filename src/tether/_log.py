"""
The logger and the stable names of tether's log events.

tether never configures logging: events go through structlog's defaults, or
through whatever the application configured. Event names are part of the public
contract; new ones may appear, existing ones keep their meaning.
"""

from __future__ import annotations

from typing import Final

import structlog


logger: Final = structlog.get_logger("tether")

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
