"""
The per-user record of local sessions, and what the machine says about them.

One JSON file per session in the state directory holds what any manager needs
to find it again (tether's id, labels, deadline, process group); the process
table is the ground truth of what still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs


__all__ = [
    "MARKER",
    "Record",
    "RecordBook",
    "group_alive",
    "read_note",
    "session_pids",
]

#: The environment variable every process of a session carries: its remote id.
MARKER: Final = "TETHER_LOCAL_SESSION"


#: The most a watchdog's note may hold.
_NOTE_MAX: Final = 1 << 20


def read_note(path: Path) -> dict[str, Any] | None:
    """
    A JSON object the watchdog wrote in the session's runtime directory, or
    ``None``. The kernel can write there too: anything but a regular file
    (a symlink, a FIFO that would block the read) or a JSON object is no note.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            info = json.loads(f.read(_NOTE_MAX))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


@attrs.frozen(kw_only=True)
class Record:
    """
    One session as the state directory keeps it (no secrets: the kernel's key
    stays in its private connection file).
    """

    id: str
    tether_id: str
    labels: Mapping[str, str]
    params: Mapping[str, Any]
    pgid: int
    created_at: float
    deadline: float
    runtime: str
    workdir: str

    @property
    def exit_file(self) -> Path:
        """
        Where the watchdog writes why the session ended.
        """
        return Path(self.runtime) / "exit.json"

    @property
    def connection_file(self) -> Path:
        """
        The kernel's connection file (mode 0600: it holds the signing key).
        """
        return Path(self.runtime) / "kernel.json"

    @property
    def memory_file(self) -> Path:
        """
        Where the watchdog notes the processes it killed at the memory cap.
        """
        return Path(self.runtime) / "memory.json"

    def ended(self) -> str | None:
        """
        Why the session ended, if its watchdog says it did.
        """
        info = read_note(self.exit_file)
        if info is None:
            return None
        return str(info.get("reason", "ended"))


@attrs.define
class RecordBook:
    """
    The state directory: ``<state_dir>/<remote id>.json``, written atomically.
    """

    root: Path

    def path(self, remote_id: str) -> Path:
        return self.root / f"{remote_id}.json"

    def write(self, record: Record) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.path(record.id)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(attrs.asdict(record)))
        tmp.replace(target)

    def read(self, remote_id: str) -> Record | None:
        try:
            data = json.loads(self.path(remote_id).read_text())
            return Record(**data)
        except (OSError, ValueError, TypeError):
            return None

    def all(self) -> Iterator[Record]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            record = self.read(path.stem)
            if record is not None:
                yield record

    def delete(self, remote_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(remote_id).unlink()


def _pids() -> list[str]:
    return [entry for entry in os.listdir("/proc") if entry.isdigit()]  # noqa: PTH208


def _stat(pid: str) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def session_pids(remote_id: str, pgid: int | None = None) -> list[int]:
    """
    Live (not zombie) processes of a session, from ``/proc``: those in its
    process group, and those carrying its :data:`MARKER` wherever they moved.
    """
    marker = f"{MARKER}={remote_id}".encode()
    found = []
    for entry in _pids():
        stat = _stat(entry)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if pgid is not None and stat[1] == pgid:
            found.append(int(entry))
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry))
    return found


def group_alive(pgid: int) -> bool:
    """
    Whether any process of the group *pgid* still runs (zombies do not count).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(
        stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X")
        for stat in (_stat(e) for e in _pids())
    )


def kill_session(record: Record, *, wait: float = 10.0) -> bool:
    """
    SIGKILL the session's group and any marked straggler; whether all are gone.
    """
    deadline = time.monotonic() + wait
    while True:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pgid, signal.SIGKILL)
        left = session_pids(record.id, record.pgid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
