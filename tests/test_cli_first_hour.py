"""
The command line for someone new to it: help that lists a provider's
parameters, one-line errors for a missing backend, progress on a terminal only.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tether._cli import EXIT_OK, EXIT_UNAVAILABLE, _output, main


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (
            "sandbox",
            ["vcpu_count", "memory_mb", "env  (secret: kept out of the store)".strip()],
        ),
        ("relay", ["users", "filters", "webhook_url"]),
        ("sipher", ["chain", "privacyLevel", "rpcProvider"]),
        ("morpheus", ["model", "bid_id"]),
    ],
)
def test_create_help_lists_the_providers_parameters(
    provider: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """
    ``tether create PROVIDER --help`` adds the parameters that the provider's
    own validation allows, one per line, secrets marked; no request is sent
    and no credentials are needed.
    """
    with pytest.raises(SystemExit) as exited:
        main(["create", provider, "--help"])
    out = capsys.readouterr().out
    _, found, section = out.partition(f"parameters of {provider} (-p KEY=VALUE):\n")
    listed = [line.strip() for line in section.split("\n\n", 1)[0].splitlines()]

    assert EXIT_OK == exited.value.code
    assert found, out
    assert set(expected) <= set(listed)


def test_create_help_without_a_provider_is_the_plain_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    ``tether create --help`` is the command's help, with no parameter section.
    """
    with pytest.raises(SystemExit):
        main(["create", "--help"])
    out = capsys.readouterr().out

    assert "usage: tether create" in out
    assert "parameters of" not in out


def test_create_help_names_an_unknown_provider(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    For a provider that is not installed, the help says so instead.
    """
    with pytest.raises(SystemExit):
        main(["create", "nosuch", "--help"])
    out = capsys.readouterr().out

    assert "parameters of nosuch: unknown (no provider named 'nosuch'" in out


def test_backend_trio_without_trio_is_a_one_line_error() -> None:
    """
    ``--backend trio`` where trio is not installed exits 4 (unavailable, as
    ``emulate`` without uvicorn) with one line on stderr, not a traceback.
    """
    code = (
        "import sys; sys.modules['trio'] = None; "
        "from tether._cli import main; "
        "raise SystemExit(main(['--backend', 'trio', 'ls', '--store', 'memory://']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert EXIT_UNAVAILABLE == proc.returncode
    expected = (
        "tether: error: --backend trio needs trio, which is not installed: "
        "pip install trio"
    )
    assert [expected] == proc.stderr.splitlines()
    assert "" == proc.stdout


class _Terminal(io.StringIO):
    """
    A stream that says it is a terminal.
    """

    def isatty(self) -> bool:
        return True


def _waited(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, **kw: bool) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    with _output.waiting("creating a sandbox session", **kw):
        pass
    return stream.getvalue()


def test_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    On a terminal without rich, a create that waits says so in one line on
    stderr.
    """
    monkeypatch.setattr(_output, "console", lambda _stream: None)

    text = _waited(monkeypatch, _Terminal(), json_output=False)

    assert "tether: creating a sandbox session...\n" == text


@pytest.mark.parametrize("json_output", [False, True], ids=["piped", "json"])
def test_no_progress_when_piped_or_json(
    monkeypatch: pytest.MonkeyPatch, json_output: bool
) -> None:
    """
    Piped (or with --json), waiting prints nothing at all.
    """
    stream = io.StringIO() if not json_output else _Terminal()

    text = _waited(monkeypatch, stream, json_output=json_output)

    assert "" == text


def test_version_names_the_installed_tether(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """
    ``tether --version`` prints the installed distribution's version and exits 0.
    """
    from importlib.metadata import version  # noqa: PLC0415

    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == EXIT_OK
    assert capsys.readouterr().out == f"tether {version('tether')}\n"
