"""
What bubblewrap is told to mount: an interpreter under /tmp or the home
directory stays reachable behind the tmpfs mounted over it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tether_local import _sandbox


def test_a_virtualenv_under_tmp_is_bound_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A virtualenv under ``/tmp`` (a CI checkout, say) is bound back read-only
    after the private ``/tmp`` is mounted: the kernel's interpreter starts.
    """
    if not tmp_path.resolve().is_relative_to("/tmp"):  # noqa: S108
        pytest.skip("pytest's temporary directories are not under /tmp here")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))

    args = _sandbox._keep_interpreter(Path("/tmp"))  # noqa: S108

    binds = [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]
    assert str(venv.resolve()) in binds or any(
        venv.resolve().is_relative_to(b) for b in binds
    )
