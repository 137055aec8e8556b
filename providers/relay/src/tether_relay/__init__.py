# Copyright 2026 The tether developers. MIT license.
"""
tether provider for Edgegap Distributed Relay sessions.

Registered as ``relay`` in the ``tether.providers`` entry-point group. The
emulator lives in :mod:`tether_relay.emulator` (extra ``emulator``).
"""

from tether_relay._config import RelayConfig
from tether_relay._handle import RelayHandle, SyncRelayHandle
from tether_relay._models import RelayCredentials, RelayEndpoint, RelayUser
from tether_relay._provider import RelayProvider


__all__ = [
    "RelayConfig",
    "RelayCredentials",
    "RelayEndpoint",
    "RelayHandle",
    "RelayProvider",
    "RelayUser",
    "SyncRelayHandle",
]
