"""
A throwaway redis-server on loopback for the Redis store's tests.

Debian's ``redis-server`` package provides the binary. Without it, tests that
need Redis are skipped, unless the ``CI`` environment variable is set: CI must
run them, so there a missing server is an error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import attrs


class RedisUnavailableError(Exception):
    """
    No Redis server can be started here.
    """


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@attrs.define
class RedisServer:
    """
    One redis-server process: no persistence, loopback only.
    """

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_redis(workdir: Path, *, attempts: int = 3) -> RedisServer:
    """
    Start redis-server on a free port and wait until it answers PING.

    Raises:
        RedisUnavailableError: The binary is not installed, or it would not
            start (the message says why).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server is not installed (Debian: apt-get install -y redis-server)"
        raise RedisUnavailableError(msg)
    error = "no attempt made"
    for _ in range(attempts):
        # Another process may take the port between here and the bind: retry.
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if _ping(port):
                return RedisServer(port=port, process=process)
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
        error = stderr.decode(errors="replace").strip() or "it did not answer PING"
    msg = f"redis-server would not start: {error}"
    raise RedisUnavailableError(msg)


def must_have_redis() -> bool:
    """
    Whether a missing Redis fails the tests (on CI) instead of skipping them.
    """
    return bool(os.environ.get("CI"))
