"""
Shell commands of a session, run by its kernel in the working directory.

The kernel imports this module (from the same installation) to run a
``command=`` execution, so the command runs inside the session's sandbox and
limits, and its output arrives on the kernel's streams.
"""

from __future__ import annotations

import subprocess
import sys


#: The exit status of the last command, for the provider to read back.
last_status: int | None = None


def run(command: str) -> None:
    """
    Run *command* with ``/bin/sh -c`` and print its output.
    """
    global last_status  # noqa: PLW0603
    done = subprocess.run(  # noqa: S603
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    last_status = done.returncode
