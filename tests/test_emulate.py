"""
Emulators found through the ``tether.emulators`` entry points, and ``tether emulate``.

``tether emulate`` runs in a subprocess on a real loopback port; the test process
is its client, as another program on the machine would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import tether
from tether._emulators import build_emulator, emulator_names
from tether.exceptions import (
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderValidationError,
)
from tether.testing import DemoScript, Emulator, EmulatorFactory


def _tether() -> list[str]:
    script = shutil.which("tether", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tether._cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "SYSTEMROOT", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("COVERAGE")}
    env.update(extra)
    return env


@pytest.fixture(name="third_party")
def _third_party(tmp_path: Path) -> Path:
    """
    A directory with a third-party distribution, tether-echo: an ``echo`` provider
    (the sandbox provider under another name) and its emulator, written against
    the public :mod:`tether.testing` API only.
    """
    (tmp_path / "tether_echo.py").write_text(
        textwrap.dedent(
            """
            from tether.testing import DemoScript, Emulator
            from tether_sandbox.emulator import SandboxEmulator

            KEY = "echo_demo_key"

            async def work(manager, session):
                return "echo is here"

            def emulation():
                emulator = SandboxEmulator(api_keys=(KEY,))
                return Emulator(
                    app=emulator.app,
                    config={"api_key": KEY},
                    demo=DemoScript(params={"vcpu_count": 1}, work=work),
                )
            """
        )
    )
    info = tmp_path / "tether_echo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tether-echo\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[tether.providers]\necho = tether_sandbox:SandboxProvider\n\n"
        "[tether.emulators]\necho = tether_echo:emulation\n"
    )
    return tmp_path


@pytest.fixture(name="serve")
def _serve() -> Iterator[Any]:
    """
    Starts ``tether emulate`` subprocesses; kills any still running at the end.
    """
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*_tether(), "emulate", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(**env),
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


async def _wait_until_accepting(proc: subprocess.Popen[str], port: int) -> None:
    """
    Poll the port until the emulator accepts connections (no speed assumed).
    """
    with anyio.fail_after(120):
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.1)
                continue
            await stream.aclose()
            return


async def _announcement(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await anyio.to_thread.run_sync(proc.stdout.readline)
    return dict(json.loads(line))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
async def test_emulate_serves_a_client_in_another_process(
    serve: Any, stop: signal.Signals
) -> None:
    """
    `tether emulate sandbox --port P` serves the sandbox emulator: a manager in
    this process creates a session on it with the announced demo config, the
    emulator holds it, and SIGINT or SIGTERM stops the server with exit status 0.
    """
    port = _free_port()
    proc = serve("sandbox", "--port", str(port), "--json")
    await _wait_until_accepting(proc, port)
    announced = await _announcement(proc)
    url = f"http://127.0.0.1:{port}"

    assert url == announced["url"]
    assert url == announced["config"]["base_url"]
    assert announced["env"]["TETHER_SANDBOX_API_KEY"] == announced["config"]["api_key"]

    async with tether.SessionManager(
        config={"sandbox": announced["config"]}, environ={}, health_checks=False
    ) as manager:
        session = await manager.create("sandbox", vcpu_count=1)
        async with httpx.AsyncClient(base_url=url) as http:
            held = await http.get(
                f"/v1/sessions/status/{session.remote_id}",
                headers={"X-API-Key": announced["config"]["api_key"]},
            )
        await manager.close(session)

    assert 200 == held.status_code
    assert held.json()["exists"] is True

    proc.send_signal(stop)
    _, err = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=120))

    assert 0 == proc.returncode, err
    assert "sandbox emulator stopped" not in err  # --json: nothing for people


async def test_emulate_says_what_a_client_needs(serve: Any) -> None:
    """
    Without --json, one line gives the URL and the demo keys as TETHER_* variables,
    saying they are demo keys.
    """
    port = _free_port()
    proc = serve("relay", "--port", str(port))
    await _wait_until_accepting(proc, port)
    assert proc.stdout is not None
    line = await anyio.to_thread.run_sync(proc.stdout.readline)
    proc.send_signal(signal.SIGINT)
    _, err = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=120))

    assert line.startswith(f"relay emulator on http://127.0.0.1:{port} ")
    assert "demo keys" in line
    assert f"TETHER_RELAY_BASE_URL=http://127.0.0.1:{port}" in line
    assert "TETHER_RELAY_API_TOKEN=" in line
    assert 0 == proc.returncode, err
    assert "relay emulator stopped" in err


def test_unknown_emulator_lists_the_installed_ones(third_party: Path) -> None:
    """
    An unknown name exits 2 naming every installed emulator, a third-party one too.
    """
    result = subprocess.run(
        [*_tether(), "emulate", "nosuch"],
        capture_output=True,
        text=True,
        env=_env(PYTHONPATH=str(third_party)),
        timeout=60,
        check=False,
    )

    assert 2 == result.returncode
    assert "nosuch" in result.stderr
    for name in ("echo", "morpheus", "relay", "sandbox", "sipher"):
        assert name in result.stderr


def test_a_third_party_emulator_takes_part_in_the_demo(third_party: Path) -> None:
    """
    `tether demo echo` runs the demo script a third-party distribution publishes.
    """
    result = subprocess.run(
        [*_tether(), "demo", "echo"],
        capture_output=True,
        text=True,
        env=_env(PYTHONPATH=str(third_party)),
        timeout=180,
        check=False,
    )

    assert 0 == result.returncode, result.stdout + result.stderr
    assert "[echo] active" in result.stdout
    assert "[echo] echo is here" in result.stdout
    assert "demo finished: every session closed" in result.stdout


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="tether.emulators")


def good_factory() -> Emulator:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise NotImplementedError

    return Emulator(app=app, config={"token": "t"}, url_field="url")


def wrong_factory() -> object:
    return object()


def test_first_party_emulators_are_entry_points() -> None:
    """
    The four first-party providers publish their emulators; listing imports none.
    """
    before = set(sys.modules)

    names = emulator_names()

    assert {"morpheus", "relay", "sandbox", "sipher"} <= set(names)
    assert not {m for m in set(sys.modules) - before if m.startswith("tether_")}


@pytest.mark.parametrize("name", ["morpheus", "relay", "sandbox", "sipher"])
def test_first_party_emulators_build(name: str) -> None:
    """
    Each first-party factory is an EmulatorFactory that builds an emulator with
    a demo script and demo credentials.
    """
    (ep,) = [e for e in _installed() if e.name == name]
    factory = ep.load()
    emulator = build_emulator(name)

    assert isinstance(factory, EmulatorFactory)
    assert isinstance(emulator.demo, DemoScript)
    assert emulator.config
    assert "http://h:1" == emulator.provider_config("http://h:1")["base_url"]
    assert "api_key" not in repr(emulator)


def _installed() -> list[EntryPoint]:
    from importlib.metadata import entry_points  # noqa: PLC0415

    return list(entry_points(group="tether.emulators"))


def test_build_from_given_entry_points() -> None:
    """
    A factory builds a fresh emulator; its config takes the URL in its own field.
    """
    eps = [_ep("mine", f"{__name__}:good_factory")]

    emulator = build_emulator("mine", eps)

    assert ["mine"] == emulator_names(eps)
    assert {"token": "t", "url": "http://x"} == emulator.provider_config("http://x")
    assert emulator is not build_emulator("mine", eps)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("tether_no_such_module:emulation", ProviderLoadError),
        (f"{__name__}:wrong_factory", ProviderValidationError),
        (f"{__name__}:_free_port", ProviderValidationError),
    ],
    ids=["import fails", "builds something else", "builds a number"],
)
def test_broken_emulators_raise_and_break_only_themselves(
    value: str, error: type[Exception]
) -> None:
    """
    An emulator that fails to import or builds the wrong thing raises for its
    name; the others still build.
    """
    eps = [_ep("broken", value), _ep("mine", f"{__name__}:good_factory")]

    with pytest.raises(error, match="broken"):
        build_emulator("broken", eps)

    assert isinstance(build_emulator("mine", eps), Emulator)


def test_unknown_emulator_names_the_installed_ones() -> None:
    """
    An unknown name raises ProviderNotFoundError with what is available.
    """
    eps = [_ep("mine", f"{__name__}:good_factory")]

    with pytest.raises(ProviderNotFoundError, match="installed: mine") as info:
        build_emulator("other", eps)

    assert ["mine"] == list(info.value.available)
