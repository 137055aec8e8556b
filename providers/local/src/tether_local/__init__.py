"""
tether provider for interpreter sessions on this machine.

Registered as ``local`` in the ``tether.providers`` entry-point group. Each
session is a Jupyter kernel in a bubblewrap sandbox; nothing is emulated.
"""

from tether_local._config import LocalConfig, default_state_dir
from tether_local._handle import LocalHandle, SyncLocalHandle
from tether_local._provider import LocalProvider


__all__ = [
    "LocalConfig",
    "LocalHandle",
    "LocalProvider",
    "SyncLocalHandle",
    "default_state_dir",
]
