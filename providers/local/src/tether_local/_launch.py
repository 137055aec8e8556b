"""
The kernel's first step inside the sandbox: set its resource limits, then exec.

``python -m tether_local._launch DATA_BYTES NPROC NOFILE UID -- COMMAND...``;
a limit of 0 is left as it is, and a UID of 0 leaves the user as it is. A
process limit counts the processes of a user: started by root, the kernel
gets a user of its own (so the limit counts this session only, and root's
exemption from it is gone); otherwise bubblewrap's user namespace does that.
"""

from __future__ import annotations

import os
import resource
import sys


def _limit(which: int, value: int) -> None:
    if value > 0:
        resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> None:
    data, nproc, nofile, uid, sep, *command = argv
    if sep != "--" or not command:
        msg = "usage: _launch DATA NPROC NOFILE UID -- COMMAND..."
        raise SystemExit(msg)
    _limit(resource.RLIMIT_DATA, int(data))
    _limit(resource.RLIMIT_NPROC, int(nproc))
    _limit(resource.RLIMIT_NOFILE, int(nofile))
    # No core dumps of a kernel killed by its memory limit.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if int(uid):
        # Dropping root clears every capability too.
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))
    os.execv(command[0], command)  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
