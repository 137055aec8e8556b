"""
The local provider's configuration.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs

from tether.abc import ProviderConfig
from tether.exceptions import ConfigError


__all__ = ["LocalConfig", "default_state_dir"]

#: Where the user ids of kernels started by root begin (root ignores process limits).
KERNEL_UID_BASE = 200_000


def default_state_dir() -> Path:
    """
    ``$XDG_STATE_HOME/tether/local`` (``~/.local/state/tether/local``).
    """
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tether" / "local"


def _default_runtime_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"tether-local-{os.getuid()}"


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        msg = f"local: {attribute.name} must be a positive number, not {value!r}"
        raise ConfigError(msg, provider="local")


def _path(value: Any) -> Path:
    return Path(value).expanduser().absolute()


@attrs.frozen(kw_only=True)
class LocalConfig(ProviderConfig):
    """
    Where local sessions keep their records and how their kernels start.

    Attributes:
        state_dir: The per-user directory of session records (tether id,
            labels, deadline, process group), read by every manager on the
            machine, so ``find``, ``list`` and ``reconcile`` work across
            processes. Env var: ``TETHER_LOCAL_STATE_DIR``.
        runtime_dir: Where each session's working directory, kernel sockets
            and connection file live (one private directory per session).
        python: The interpreter that runs the kernel (it needs ``ipykernel``).
        bwrap: The bubblewrap executable (``isolation="bwrap"``).
        kernel_uid_base: A manager running as root starts each kernel as a
            user of its own, picked from the 65536 user ids from this one
            (root is exempt from process limits, and a user per session makes
            them count that session only); ignored otherwise.
        start_timeout: Seconds a kernel may take to answer its first request.
        max_output_chars: Output kept per stream and execution; the rest is
            cut with a marker.
    """

    base_url: str = "local://this-machine"
    state_dir: Path = attrs.field(factory=default_state_dir, converter=_path)
    runtime_dir: Path = attrs.field(factory=_default_runtime_dir, converter=_path)
    python: str = sys.executable
    bwrap: str = "bwrap"
    kernel_uid_base: int = attrs.field(default=KERNEL_UID_BASE, validator=_positive)
    start_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_output_chars: int = attrs.field(default=1_000_000, validator=_positive)
