# Copyright 2026 The tether developers. SPDX-License-Identifier: MIT
"""
The core names this provider uses, in one place.

XXX: ``tether/__init__.py`` does not re-export ``Secret``, ``Session``,
``Health``, ``HealthStatus`` and ``SessionState`` yet; until it does they come
from their private modules here, so switching is a one-file change.
"""

from __future__ import annotations

from tether._redact import Secret
from tether._session import Health, HealthStatus, Session, SessionState


__all__ = ["Health", "HealthStatus", "Secret", "Session", "SessionState"]
