"""
Talking to one session's kernel: jupyter_client's blocking client, in threads.

jupyter_client's async client is asyncio-only; tether runs on trio as well.
So every call here is blocking and the provider runs it in an anyio worker
thread; a lock keeps one execution at a time on the kernel's sockets.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from pathlib import Path
from typing import Any, Final

import zmq
from jupyter_client.blocking.client import BlockingKernelClient

from tether.abc import ExecutionResult


__all__ = ["Kernel", "KernelDiedError", "KernelTimeoutError"]

# Tracebacks come coloured; ExecutionResult holds plain text.
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_POLL: Final = 0.1
#: How long an interrupted execution may take to stop before we give up on it.
_INTERRUPT_GRACE: Final = 10.0
_STATUS: Final = "__import__('tether_local._shell', fromlist=['_']).last_status"


class KernelDiedError(Exception):
    """
    The kernel went away during a call; *reason* says why, when known.
    """


class KernelTimeoutError(Exception):
    """
    The kernel did not answer in time.
    """


class _Output:
    """
    One stream's text, capped: what passes the cap is cut with a marker.
    """

    def __init__(self, cap: int) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._cap = cap
        self.cut = False

    def add(self, text: str) -> None:
        room = self._cap - self._size
        if room <= 0:
            self.cut = True
            return
        if len(text) > room:
            text, self.cut = text[:room], True
        self._parts.append(text)
        self._size += len(text)

    def text(self) -> str:
        out = "".join(self._parts)
        if self.cut:
            out += f"\n[tether: output cut at {self._cap} characters]\n"
        return out


class Kernel:
    """
    A connection to a running kernel, from its connection file.
    """

    def __init__(self, connection_file: Path, *, died: Any) -> None:
        #: Returns why the kernel is gone, or None while it runs.
        self._died = died
        self._lock = threading.Lock()
        self._client = BlockingKernelClient(connection_file=str(connection_file))
        self._client.load_connection_file()
        self._client.start_channels(hb=False)

    def close(self) -> None:
        """
        Close the sockets, once an execution still running (abandoned by a
        cancelled caller) has stopped.
        """
        if self._lock.acquire(timeout=_INTERRUPT_GRACE + 1):
            try:
                self._client.stop_channels()
            finally:
                self._lock.release()

    def _check(self) -> None:
        reason = self._died()
        if reason is not None:
            raise KernelDiedError(reason)

    def wait_ready(self, timeout: float) -> None:
        """
        Block until the kernel answers ``kernel_info``.
        """
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                self._client.kernel_info()
                try:
                    self._client.shell_channel.get_msg(timeout=0.5)
                except queue.Empty:
                    self._check()
                    if time.monotonic() > end:
                        msg = f"the kernel did not answer within {timeout:g} s"
                        raise KernelTimeoutError(msg) from None
                    continue
                # Drain the iopub status messages of the start.
                while True:
                    try:
                        self._client.iopub_channel.get_msg(timeout=0.05)
                    except queue.Empty:
                        break
                return

    def _reply(self, msg_id: str) -> dict[str, Any] | None:
        # Skip the answers to earlier requests (the kernel_info of the start).
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                reply: dict[str, Any] = self._client.shell_channel.get_msg(timeout=0.5)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
        return None

    def heartbeat(self, timeout: float = 5.0) -> bool:
        """
        One round trip on the kernel's heartbeat socket.
        """
        info = self._client.get_connection_info()
        url = f"{info['transport']}://{info['ip']}-{info['hb_port']}"
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(url)
            sock.send(b"ping")
            if sock.poll(int(timeout * 1000)):
                sock.recv()
                return True
            return False
        finally:
            sock.close()

    def execute(
        self,
        source: str,
        *,
        shell: bool,
        timeout: float,
        cap: int,
        stop: threading.Event,
    ) -> ExecutionResult:
        """
        Run *source* (Python, or a shell command with *shell*); its output.

        Past *timeout* seconds, or when *stop* is set (the caller was
        cancelled), the kernel is interrupted: the execution ends with
        KeyboardInterrupt, and the session lives on.
        """
        code = (
            f"__import__('tether_local._shell', fromlist=['_']).run({source!r})"
            if shell
            else source
        )
        with self._lock:
            return self._execute(code, shell=shell, timeout=timeout, cap=cap, stop=stop)

    def _execute(
        self,
        code: str,
        *,
        shell: bool,
        timeout: float,
        cap: int,
        stop: threading.Event,
    ) -> ExecutionResult:
        client = self._client
        started = time.monotonic()
        msg_id = client.execute(
            code,
            silent=False,
            store_history=not shell,
            allow_stdin=False,
            user_expressions={"status": _STATUS} if shell else None,
        )
        stdout, stderr = _Output(cap), _Output(cap)
        interrupted: str | None = None
        give_up = float("inf")
        idle = False
        while not idle:
            now = time.monotonic()
            if interrupted is None and (stop.is_set() or now - started > timeout):
                interrupted = "cancelled" if stop.is_set() else "timeout"
                client.control_channel.send(client.session.msg("interrupt_request", {}))
                give_up = now + _INTERRUPT_GRACE
            if now > give_up:
                raise KernelTimeoutError(
                    "the kernel did not stop after an interrupt"
                ) from None
            try:
                msg = client.iopub_channel.get_msg(timeout=_POLL)
            except queue.Empty:
                self._check()
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (stdout if content["name"] == "stdout" else stderr).add(content["text"])
            elif kind in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain")
                if text is not None:
                    stdout.add(text + "\n")
            elif kind == "error":
                stderr.add(_ANSI.sub("", "\n".join(content["traceback"])) + "\n")
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        elapsed = time.monotonic() - started
        raw: dict[str, Any] = {"status": "ok"}
        reply = self._reply(msg_id)
        if reply is not None:
            content = reply["content"]
            raw["status"] = content.get("status", "ok")
            raw["execution_count"] = content.get("execution_count")
            status = content.get("user_expressions", {}).get("status", {})
            text = status.get("data", {}).get("text/plain")
            if shell and text not in (None, "None"):
                raw["exit_status"] = int(text)
        if interrupted is not None:
            raw["status"] = interrupted
            if interrupted == "timeout":
                stderr.add(
                    f"\n[tether: interrupted after the {timeout:g} s exec_timeout]\n"
                )
        raw["truncated"] = stdout.cut or stderr.cut
        return ExecutionResult(
            stdout=stdout.text(),
            stderr=stderr.text(),
            execution_time=elapsed,
            raw=raw,
        )
