"""
The installed ``tether`` console script, run in subprocesses against the sandbox emulator.

The emulator runs on a real loopback socket in a thread of the test process; the
CLI finds the first-party ``sandbox`` provider through its installed entry point
and reaches the emulator through ``TETHER_SANDBOX_BASE_URL``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs
import pytest
from anyio.from_thread import start_blocking_portal

from tether._cli import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    _ago,
    build_parser,
    exit_code_for,
    load_settings,
)
from tether.exceptions import (
    AuthError,
    ConfigError,
    NotSupportedError,
    ProviderLoadError,
    ProviderUnavailableError,
    RemoteNotFoundError,
    SessionNotFoundError,
)
from tether.testing import serve_asgi
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_cli_5e6f7a8b9c0d"


def _command() -> list[str]:
    script = shutil.which("tether", path=str(Path(sys.executable).parent))
    if script is None:  # pragma: no cover - the console script is installed
        return [sys.executable, "-m", "tether._cli"]
    return [script]


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        # stderr holds JSON lines: log events, then the error.
        lines = [json.loads(line) for line in self.err.splitlines()]
        return dict(lines[-1]["error"])


@attrs.define
class CLI:
    """
    Runs the console script with an isolated home, config and store.
    """

    env: dict[str, str]
    home: Path

    def __call__(self, *args: str, **env: str) -> Result:
        proc = subprocess.run(
            [*_command(), *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(name="emulator", scope="module")
def _emulator() -> SandboxEmulator:
    """
    One sandbox emulator accepting the test key.
    """
    return SandboxEmulator(api_keys=(KEY,))


@pytest.fixture(name="emulator_url", scope="module")
def _emulator_url(emulator: SandboxEmulator) -> Iterator[str]:
    """
    The emulator served from a background event loop, for the subprocesses.
    """
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_asgi(emulator.app)) as server,
    ):
        yield server.url


@pytest.fixture(name="cli")
def _cli(tmp_path: Path, emulator_url: str) -> CLI:
    """
    The CLI with its own XDG directories and the emulator's URL and key in the environment.
    """
    keep = ("PATH", "SYSTEMROOT", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH")
    # COVERAGE_*: coverage measures the subprocesses too, when it runs the suite.
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("COVERAGE")}
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        TETHER_SANDBOX_BASE_URL=emulator_url,
        TETHER_SANDBOX_API_KEY=KEY,
        TETHER_SANDBOX_TIMEOUT="5",
    )
    return CLI(env=env, home=tmp_path)


def test_lifecycle_persists_between_invocations(
    cli: CLI, emulator: SandboxEmulator, tmp_path: Path
) -> None:
    """
    create, ls, inspect, ping, update-refusal and close work across separate processes.
    """
    created = cli(
        "create",
        "sandbox",
        "--param",
        "vcpu_count=2",
        "--label",
        "job=42",
        "--lifetime",
        "5m",
        "--json",
    )

    assert EXIT_OK == created.code, created.err
    session = created.json()
    assert "active" == session["state"]
    assert {"job": "42"} == session["labels"]
    assert 300 == session["lifetime"]
    assert 2 == session["params"]["vcpu_count"]
    assert session["remote_id"] in emulator.live_sessions()
    assert (tmp_path / "state" / "tether" / "sessions.db").is_file()

    listed = cli("--json", "ls", "--label", "job=42", "--backend", "trio")

    assert EXIT_OK == listed.code, listed.err
    assert [session["id"]] == [s["id"] for s in listed.json()]

    inspected = cli("inspect", session["id"][:8], "--json")

    assert EXIT_OK == inspected.code, inspected.err
    assert session["remote_id"] == inspected.json()["remote_id"]

    pinged = cli("ping", session["id"], "--json")

    assert EXIT_OK == pinged.code, pinged.err
    assert "alive" == pinged.json()["status"]
    assert "active" == pinged.json()["session"]["state"]

    closed = cli("close", session["id"], "--json")

    assert EXIT_OK == closed.code, closed.err
    assert "closed" == closed.json()["state"]
    assert session["remote_id"] not in emulator.live_sessions()
    assert [] == cli("ls", "--state", "active", "--json").json()

    everything = "".join(
        r.out + r.err for r in (created, listed, inspected, pinged, closed)
    )
    assert KEY not in everything


def test_human_output(cli: CLI) -> None:
    """
    Without --json, ls prints an aligned table and inspect a field list.
    """
    created = cli("create", "sandbox", "-l", "team=infra", "--json").json()

    table = cli("ls", "--provider", "sandbox")

    assert EXIT_OK == table.code, table.err
    header, *rows = table.out.splitlines()
    assert header.split() == [
        "ID",
        "PROVIDER",
        "STATE",
        "REMOTE",
        "ID",
        "CREATED",
        "EXPIRES",
        "LABELS",
    ]
    (row,) = [r for r in rows if r.startswith(created["id"])]
    assert header.index("PROVIDER") == row.index("sandbox")
    assert "team=infra" in row

    shown = cli("inspect", created["id"])

    assert EXIT_OK == shown.code
    assert "id:" in shown.out
    assert "state:" in shown.out
    assert "team=infra" in shown.out

    closed = cli("close", created["id"])

    assert f"{created['id']}: closed\n" == closed.out


def test_update_not_supported(cli: CLI) -> None:
    """
    A provider that cannot update exits 5, with the reason on stderr.
    """
    created = cli("create", "sandbox", "--json").json()

    result = cli("update", created["id"], "--param", "env={}", "--json")

    assert EXIT_UNSUPPORTED == result.code
    assert "NotSupportedError" == result.error()["type"]
    assert "" == result.out
    cli("close", created["id"])


def test_unknown_provider(cli: CLI) -> None:
    """
    An unknown provider exits 3 and names the installed ones.
    """
    result = cli("create", "nope", "--json")

    assert EXIT_NOT_FOUND == result.code
    error = result.error()
    assert "ProviderNotFoundError" == error["type"]
    assert "sandbox" in error["message"]


def test_bad_param(cli: CLI, emulator: SandboxEmulator) -> None:
    """
    A parameter the provider refuses exits 2 before anything is sent.
    """
    before = len(emulator.live_sessions())

    result = cli("create", "sandbox", "--param", "vcpu_count=3", "--json")

    assert EXIT_USAGE == result.code
    error = result.error()
    assert "InvalidParameterError" == error["type"]
    assert "vcpu_count" == error["field"]
    assert before == len(emulator.live_sessions())


def test_missing_credentials(cli: CLI) -> None:
    """
    Without the API key the config is incomplete: exit 2, naming the variable to set.
    """
    env = dict(cli.env)
    del env["TETHER_SANDBOX_API_KEY"]
    bare = CLI(env=env, home=cli.home)

    result = bare("create", "sandbox")

    assert EXIT_USAGE == result.code
    assert "TETHER_SANDBOX_API_KEY" in result.err
    assert result.err.startswith("tether: error:")


def test_missing_config_file(cli: CLI) -> None:
    """
    An explicitly named config file that does not exist exits 2.
    """
    result = cli("--config", str(cli.home / "nope.toml"), "ls")

    assert EXIT_USAGE == result.code
    assert "does not exist" in result.err


def test_config_file(cli: CLI) -> None:
    """
    [providers.<name>] tables configure providers; the environment overrides them.
    """
    config = cli.home / "tether.toml"
    config.write_text(
        f'store = "sqlite:///{cli.home}/other.db"\n'
        "[providers.sandbox]\n"
        'base_url = "http://127.0.0.1:9"\n'
        "timeout = 3\n",
        encoding="utf-8",
    )

    created = cli("create", "sandbox", "--config", str(config), "--json")

    # TETHER_SANDBOX_BASE_URL (the emulator) won over the file's dead address.
    assert EXIT_OK == created.code, created.err
    assert (cli.home / "other.db").is_file()

    env = dict(cli.env)
    del env["TETHER_SANDBOX_BASE_URL"]
    unreachable = CLI(env=env, home=cli.home)(
        "create", "sandbox", "--config", str(config)
    )

    assert EXIT_UNAVAILABLE == unreachable.code
    assert KEY not in unreachable.err
    cli("close", created.json()["id"], "--config", str(config))


def test_invalid_config_file(cli: CLI) -> None:
    """
    A config file that is not TOML, or holds unknown settings, exits 2.
    """
    broken = cli.home / "broken.toml"
    broken.write_text("[providers\n", encoding="utf-8")
    odd = cli.home / "odd.toml"
    odd.write_text("colour = 'blue'\n", encoding="utf-8")

    assert EXIT_USAGE == cli("--config", str(broken), "ls").code
    result = cli("--config", str(odd), "ls")

    assert EXIT_USAGE == result.code
    assert "colour" in result.err


def test_session_not_found(cli: CLI) -> None:
    """
    inspect, ping and close of an unknown id exit 3.
    """
    for command in ("inspect", "ping", "close"):
        result = cli(command, "0123456789abcdef", "--json")

        assert EXIT_NOT_FOUND == result.code, command
        assert "SessionNotFoundError" == result.error()["type"]


def test_usage_errors(cli: CLI) -> None:
    """
    Malformed arguments exit 2 with argparse's message.
    """
    assert EXIT_USAGE == cli().code
    assert EXIT_USAGE == cli("create", "sandbox", "--param", "novalue").code
    assert EXIT_USAGE == cli("create", "sandbox", "--lifetime", "-3").code
    assert EXIT_USAGE == cli("ls", "--state", "sleepy").code
    assert EXIT_USAGE == cli("update", "abcd").code


def test_version(cli: CLI) -> None:
    """
    --version prints the installed distribution's version and exits 0.
    """
    result = cli("--version")

    assert EXIT_OK == result.code, result.err
    assert f"tether {version('tether')}\n" == result.out


def test_providers_json(cli: CLI) -> None:
    """
    providers lists the first-party plugins with versions and config status.
    """
    result = cli("providers", "--json")

    assert EXIT_OK == result.code, result.err
    by_name = {p["name"]: p for p in result.json()}
    assert {"morpheus", "relay", "sandbox", "sipher"} <= set(by_name)
    sandbox = by_name["sandbox"]
    assert "tether-sandbox" == sandbox["distribution"]
    assert sandbox["ok"]
    assert sandbox["configured"]
    assert not by_name["relay"]["configured"]
    assert "TETHER_RELAY_" in by_name["relay"]["config_error"]


def test_providers_doctor_explains_a_broken_plugin(cli: CLI, tmp_path: Path) -> None:
    """
    A plugin that fails to import is reported with its distribution and cause, exit 4.
    """
    site = tmp_path / "site"
    dist_info = site / "tether_broken-1.2.3.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tether-broken\nVersion: 1.2.3\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        "[tether.providers]\nbroken = tether_broken_missing:Provider\n",
        encoding="utf-8",
    )

    result = cli("providers", PYTHONPATH=str(site))

    assert EXIT_UNAVAILABLE == result.code
    assert "broken" in result.out
    assert "tether-broken" in result.out
    assert "ModuleNotFoundError" in result.out
    assert "pip install --force-reinstall tether-broken" in result.out

    data = {
        p["name"]: p for p in cli("providers", "--json", PYTHONPATH=str(site)).json()
    }

    assert not data["broken"]["ok"]
    assert "1.2.3" == data["broken"]["version"]
    assert data["sandbox"]["ok"]

    created = cli("create", "broken", "--json", PYTHONPATH=str(site))

    assert EXIT_UNAVAILABLE == created.code
    assert "ProviderLoadError" == created.error()["type"]


def test_reconcile(cli: CLI) -> None:
    """
    reconcile finds a tagged session no record owns: --dry-run and --orphans report leave it, a sweep closes it.

    On a tether without SessionManager.reconcile(), it exits 5 and says so.
    """
    emulator = SandboxEmulator(api_keys=(KEY,))
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_asgi(emulator.app)) as server,
    ):
        mine = CLI(
            env={**cli.env, "TETHER_SANDBOX_BASE_URL": server.url}, home=cli.home
        )
        created = mine("create", "sandbox", "--json").json()
        # Another store knows nothing of it: to that store it is an orphan.
        other = ("--store", f"sqlite:///{cli.home}/other.db", "--grace", "0.001")

        dry = mine("reconcile", "--dry-run", *other, "--json")

        if dry.code == EXIT_UNSUPPORTED:  # pragma: no cover - before reconcile()
            assert "reconcile" in dry.error()["message"]
            return
        assert EXIT_OK == dry.code, dry.err
        report = dry.json()
        assert report["dry_run"] is True
        assert [created["remote_id"]] == [a["remote_id"] for a in report["actions"]]
        assert {"closed": 1} == report["counts"]
        assert created["remote_id"] in emulator.live_sessions()

        reported = mine("reconcile", "--orphans", "report", *other)

        assert EXIT_OK == reported.code, reported.err
        assert reported.out.startswith("ACTION")
        assert created["remote_id"] in reported.out
        assert "1 orphan" in reported.out
        assert created["remote_id"] in emulator.live_sessions()

        swept = mine("sweep", "--provider", "sandbox", *other, "--json")

        assert EXIT_OK == swept.code, swept.err
        assert {"closed": 1} == swept.json()["counts"]
        assert created["remote_id"] not in emulator.live_sessions()
        assert "nothing changed" in mine("reconcile", "--dry-run", *other).out


def test_help_documents_exit_codes(cli: CLI) -> None:
    """
    --help lists the exit statuses and the configuration sources.
    """
    result = cli("--help")

    assert EXIT_OK == result.code
    for expected in ("exit status:", "130", "TETHER_STORE", "config.toml", "ping"):
        assert expected in result.out


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), EXIT_USAGE),
        (AuthError("x", provider="p"), EXIT_USAGE),
        (SessionNotFoundError("x", session_id="s"), EXIT_NOT_FOUND),
        (ProviderLoadError("x", name="p", entry_point="m:C"), EXIT_UNAVAILABLE),
        (ProviderUnavailableError("x", provider="p"), EXIT_UNAVAILABLE),
        (NotSupportedError("x", provider="p", operation="o"), EXIT_UNSUPPORTED),
        (RemoteNotFoundError("x", provider="p"), EXIT_ERROR),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    """
    Each kind of error maps to its documented exit status.
    """
    assert code == exit_code_for(error)


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    """
    --json, --store and --backend work on either side of the command name.
    """
    parser = build_parser()

    before = parser.parse_args(["--json", "--store", "memory://", "ls"])
    after = parser.parse_args(["ls", "--json", "--backend", "trio"])

    assert before.json
    assert "memory://" == before.store
    assert after.json
    assert "trio" == after.backend
    assert not hasattr(after, "store")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0s"),
        (59.6, "1m00s"),
        (599.9, "10m00s"),
        (7322, "2h02m"),
        (90000, "1d01h"),
    ],
)
def test_durations_read_well(seconds: float, text: str) -> None:
    """
    Relative times round to whole units and never show 60 seconds.
    """
    assert text == _ago(seconds)


def test_store_precedence(tmp_path: Path) -> None:
    """
    --store wins over TETHER_STORE, which wins over the file, which wins over the default.
    """
    config = tmp_path / "c.toml"
    config.write_text('store = "sqlite:///file.db"\n', encoding="utf-8")
    env = {"XDG_STATE_HOME": str(tmp_path / "s"), "XDG_CONFIG_HOME": str(tmp_path)}

    assert "memory://" == load_settings(str(config), "memory://", env).store_url
    assert (
        "sqlite:///env.db"
        == load_settings(
            str(config), None, {**env, "TETHER_STORE": "sqlite:///env.db"}
        ).store_url
    )
    assert "sqlite:///file.db" == load_settings(str(config), None, env).store_url
    assert (
        f"sqlite:///{tmp_path}/s/tether/sessions.db"
        == load_settings(None, None, env).store_url
    )


def test_reconcile_accepts_no_grace(cli: CLI) -> None:
    """
    ``--grace 0`` means no grace at all; a negative one is a usage error.
    """
    ok = cli("reconcile", "--grace", "0", "--json")
    bad = cli("reconcile", "--grace", "-5")

    assert EXIT_OK == ok.code, ok.err
    assert [] == ok.json()["actions"]
    assert 2 == bad.code
    assert "duration" in bad.err


def test_an_unreachable_store_is_json_and_exit_4(cli: CLI) -> None:
    """
    ``--json ls`` on a Redis store nobody serves answers a JSON error with
    exit status 4 (unavailable), and never shows the URL's password.
    """
    result = cli("--json", "ls", "--store", "redis://:pw-in-store-url@127.0.0.1:1/0")

    assert EXIT_UNAVAILABLE == result.code
    assert "StoreUnavailableError" == result.error()["type"]
    assert "pw-in-store-url" not in result.err + result.out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_store_refusing_the_password_is_json_and_exit_1(
    cli: CLI, own_redis: Any, backend: str
) -> None:
    """
    ``--json ls`` on a Redis store that refuses the URL's password answers a
    typed JSON error (StoreError: retrying will not help) with the exit
    status the table documents for it, no traceback, and the password
    nowhere in its output.
    """
    redis = pytest.importorskip("redis")
    admin = redis.Redis(host="127.0.0.1", port=own_redis.port)
    admin.config_set("requirepass", "right-horse-battery")
    admin.close()
    url = f"redis://:wrong-staple-in-url@127.0.0.1:{own_redis.port}/0"

    result = cli("--json", "ls", "--store", url, "--backend", backend)

    error = result.error()
    assert EXIT_ERROR == result.code == error["exit_code"]
    assert ("StoreError", "list") == (error["type"], error["operation"])
    assert "refused the credentials" in error["message"]
    assert "" == result.out
    assert "Traceback" not in result.err
    assert "wrong-staple-in-url" not in result.err + result.out
