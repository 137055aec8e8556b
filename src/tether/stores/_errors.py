"""
What the durable stores share to turn their backends' failures into ours.
"""

from __future__ import annotations

import json

from tether._session import Session
from tether.exceptions import StoreError


def decode(raw: str | bytes, *, store: str, operation: str) -> Session:
    """
    The session a stored JSON record holds.

    Raises:
        StoreError: The record is not one tether wrote (edited or corrupted).
    """
    try:
        return Session.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        # The exception's text may quote the record; records hold no secrets.
        msg = f"{operation}: {store} holds a record that is not a tether session: {exc}"
        raise StoreError(msg, store=store, operation=operation) from exc
