"""
tether provider for Sipher (SIP Protocol) agent sessions.

Install ``tether-sipher`` and the provider registers itself as ``sipher``
through the ``tether.providers`` entry-point group. The emulator lives in
:mod:`tether_sipher.emulator` (extra ``emulator``).
"""

from tether_sipher._config import DEFAULT_BASE_URL, SipherConfig
from tether_sipher._defaults import BACKENDS, CHAINS, PRIVACY_LEVELS, RPC_PROVIDERS
from tether_sipher._handle import SipherHandle, SyncSipherHandle
from tether_sipher._provider import SipherProvider, SipherSessionAuth


__all__ = [
    "BACKENDS",
    "CHAINS",
    "DEFAULT_BASE_URL",
    "PRIVACY_LEVELS",
    "RPC_PROVIDERS",
    "SipherConfig",
    "SipherHandle",
    "SipherProvider",
    "SipherSessionAuth",
    "SyncSipherHandle",
]
