"""
The core names this provider uses, in one place.
"""

from __future__ import annotations

from tether import Health, HealthStatus, Secret, Session, SessionState


__all__ = ["Health", "HealthStatus", "Secret", "Session", "SessionState"]
