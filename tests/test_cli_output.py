"""
The CLI's human output: plain when piped, rich tables on a terminal, NO_COLOR honoured.
"""

from __future__ import annotations

import io

import pytest

from tether._cli import _output


class _Terminal(io.StringIO):
    """
    A stream that says it is a terminal.
    """

    def isatty(self) -> bool:
        return True


ROWS = [["abc", "active"], ["defgh", "failed"]]


def test_piped_output_is_plain(capsys: pytest.CaptureFixture[str]) -> None:
    """
    Not on a terminal, a table is columns aligned with two spaces.
    """
    _output.print_table(["ID", "STATE"], ROWS, coloured=[1])

    assert "ID     STATE\nabc    active\ndefgh  failed\n" == capsys.readouterr().out


def test_no_console_when_piped() -> None:
    """
    rich is used only for a terminal.
    """
    assert None is _output.console(io.StringIO())


def test_terminal_colours_states(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    On a terminal, with rich installed, states are coloured.
    """
    pytest.importorskip("rich")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = _Terminal()
    monkeypatch.setattr("sys.stdout", stream)

    _output.print_table(["ID", "STATE"], ROWS, coloured=[1])

    text = stream.getvalue()
    assert "\x1b[" in text
    assert "active" in text
    assert "defgh" in text


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    NO_COLOR turns colours off, on a terminal too.
    """
    pytest.importorskip("rich")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = _Terminal()
    monkeypatch.setattr("sys.stdout", stream)

    _output.print_table(["ID", "STATE"], ROWS, coloured=[1])

    text = stream.getvalue()
    assert "\x1b[3" not in text  # no foreground colour
    assert "active" in text
