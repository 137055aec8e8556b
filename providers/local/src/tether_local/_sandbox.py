"""
Starting a session's processes: the kernel's command line, in or out of bubblewrap.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tether.exceptions import InvalidParameterError
from tether_local._config import LocalConfig
from tether_local._records import MARKER


__all__ = ["bwrap_path", "kernel_uid", "prepare", "spawn"]

# AF_UNIX paths are at most 107 bytes; the kernel's sockets are <runtime>/k-N.
_MAX_SOCKET_PATH: Final = 100
_MIB: Final = 1024 * 1024


def bwrap_path(config: LocalConfig) -> str | None:
    """
    The bubblewrap executable, or ``None`` when it is not installed.
    """
    return shutil.which(config.bwrap)


def kernel_uid(config: LocalConfig, params: Mapping[str, Any]) -> int | None:
    """
    A user of the session's own for a sandbox started by root, else ``None``
    (the kernel runs as we do).
    """
    if os.geteuid() != 0 or params["isolation"] != "bwrap":
        return None
    return config.kernel_uid_base + secrets.randbelow(65536)


def check_paths(config: LocalConfig) -> None:
    """
    Refuse a runtime directory too deep for the kernel's unix sockets.
    """
    longest = config.runtime_dir / ("l" + "0" * 12) / "k-5"
    if len(str(longest)) > _MAX_SOCKET_PATH:
        msg = (
            f"local: runtime_dir {str(config.runtime_dir)!r} is too long for the "
            f"kernel's unix sockets (at most {_MAX_SOCKET_PATH - 20} characters)"
        )
        raise InvalidParameterError(
            msg, field="runtime_dir", value=str(config.runtime_dir), provider="local"
        )


def _own(path: Path, uid: int | None) -> None:
    if uid is not None:
        os.chown(path, uid, uid)


def prepare(
    config: LocalConfig, remote_id: str, uid: int | None
) -> tuple[Path, Path, Path]:
    """
    Make the session's private runtime directory, working directory and
    connection file, owned by *uid*; ``(runtime, workdir, connection_file)``.
    """
    config.runtime_dir.mkdir(parents=True, exist_ok=True)
    # Others may pass through (a kernel running as kernel_uid), not look inside.
    config.runtime_dir.chmod(0o711)
    runtime = config.runtime_dir / remote_id
    runtime.mkdir(mode=0o700)
    workdir = runtime / "work"
    workdir.mkdir(mode=0o700)
    connection = runtime / "kernel.json"
    info = {
        "transport": "ipc",
        "ip": str(runtime / "k"),
        "shell_port": 1,
        "iopub_port": 2,
        "stdin_port": 3,
        "control_port": 4,
        "hb_port": 5,
        "key": secrets.token_hex(32),
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
    }
    fd = os.open(connection, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    for path in (runtime, workdir, connection):
        _own(path, uid)
    return runtime, workdir, connection


def kernel_argv(
    config: LocalConfig,
    params: Mapping[str, Any],
    *,
    runtime: Path,
    workdir: Path,
    connection: Path,
    remote_id: str,
    uid: int | None,
) -> list[str]:
    """
    The command the watchdog starts: the limits, the kernel, in the sandbox.
    """
    isolated = params["isolation"] == "bwrap"
    # Process limits count per user: only a user of the session's own (under
    # root) or the sandbox's user namespace make them count this session.
    counted = uid is not None or isolated
    limits = [
        str(params["memory_mb"] * _MIB),
        str(params["processes"] if counted else 0),
        str(params["open_files"]),
        str(uid or 0),
    ]
    kernel = [
        config.python,
        "-m",
        "tether_local._launch",
        *limits,
        "--",
        config.python,
        "-m",
        "ipykernel_launcher",
        "-f",
        str(connection),
        "--HistoryManager.enabled=False",
        "--quiet",
    ]
    if not isolated:
        return kernel
    home = _private_home()
    bwrap = bwrap_path(config)
    if bwrap is None:  # checked at parse_create; installed packages can vanish
        msg = "local: bubblewrap is not installed"
        raise InvalidParameterError(msg, field="isolation", provider="local")
    return [
        bwrap,
        # Root needs no user namespace (the kernel gets a user of its own).
        *(["--unshare-user"] if uid is None else []),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if params["network"] else ["--unshare-net"]),
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",  # noqa: S108
        *_keep_interpreter(Path("/tmp")),  # noqa: S108
        *home,
        *_passable(runtime, Path("/tmp")),  # noqa: S108
        "--bind",
        str(runtime),
        str(runtime),
        "--chdir",
        str(workdir),
        "--setenv",
        MARKER,
        remote_id,
        "--",
        *kernel,
    ]


def _passable(path: Path, mount: Path) -> list[str]:
    """
    bubblewrap makes the missing parents of a mount point 0700: make those
    under *mount* (a tmpfs it made) passable for another user first.
    """
    if not path.is_relative_to(mount):
        return []
    args: list[str] = []
    for parent in reversed(path.relative_to(mount).parents[:-1]):
        args += ["--perms", "0755", "--dir", str(mount / parent)]
    return args


def _interpreter_paths() -> set[Path]:
    """
    The directories the kernel's interpreter needs: its prefixes (a pyenv, a
    virtualenv), its import path (editable installs), and the directory of
    the executable as called and as resolved.
    """
    needed = {
        Path(p).resolve()
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path)
        if p and Path(p).exists()
    }
    needed.add(Path(sys.executable).resolve().parent)
    needed.add(Path(sys.executable).absolute().parent)
    return needed


def _keep_interpreter(mount: Path) -> list[str]:
    """
    bubblewrap arguments that bind back, read-only, the interpreter's
    directories under *mount* (a tmpfs just mounted over it): a virtualenv
    under ``/tmp`` or the home directory still starts.
    """
    inside = sorted(
        p for p in _interpreter_paths() if p != mount and p.is_relative_to(mount)
    )
    keep: list[Path] = []
    for path in inside:
        if not any(path.is_relative_to(k) for k in keep):
            keep.append(path)
    args: list[str] = []
    for path in keep:
        args += [*_passable(path, mount), "--ro-bind", str(path), str(path)]
    return args


def _private_home() -> list[str]:
    """
    bubblewrap arguments that hide our home directory from the kernel, but
    for the parts of it the interpreter needs (a pyenv, a virtualenv).

    The kernel of a root manager runs as another user, who could not reach
    an interpreter under ``/root`` (mode 0700): a tmpfs over the home lets it
    pass, and the interpreter's own directories are bound read-only.
    """
    home = Path.home().resolve()
    if home in (Path("/"), Path("/tmp")):  # noqa: S108
        return []
    return ["--perms", "0755", "--tmpfs", str(home), *_keep_interpreter(home)]


def spawn(
    config: LocalConfig,
    *,
    remote_id: str,
    argv: list[str],
    runtime: Path,
    workdir: Path,
    deadline: float,
    memory_limit: int = 0,
) -> subprocess.Popen[bytes]:
    """
    Start the session's watchdog, which starts the kernel: a new process
    group, not tied to this process's life. It holds all the session's
    processes together to *memory_limit* bytes (0: no cap).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "TZ", "TERM", "PYTHONPATH")
    }
    env.update(
        {
            MARKER: remote_id,
            "HOME": str(workdir),
            "IPYTHONDIR": str(runtime / "ipython"),
            "MPLBACKEND": "agg",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    spec = {
        "argv": argv,
        "cwd": str(workdir),
        "env": env,
        "deadline": deadline,
        "session": remote_id,
        "memory_limit": memory_limit,
        "memory_file": str(runtime / "memory.json"),
        "exit_file": str(runtime / "exit.json"),
        "log_file": str(runtime / "kernel.log"),
    }
    spec_file = runtime / "watchdog.json"
    spec_file.write_text(json.dumps(spec))
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tether_local._supervisor", str(spec_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        cwd=str(runtime),
    )
