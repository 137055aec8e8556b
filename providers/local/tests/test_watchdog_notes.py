"""
The watchdog's notes live in the session's runtime directory, which the kernel
can write too: what it plants there neither redirects a (root) watchdog's
writes nor blocks a reader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tether_local._records import read_note
from tether_local._supervisor import _record


def test_a_planted_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    """
    A symlink where the watchdog writes its note first: the file it points
    to keeps its content, and the note is written in its place.
    """
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "exit.tmp").symlink_to(outside)
    (runtime / "exit.json").symlink_to(outside)

    _record(runtime / "exit.json", reason="deadline reached")

    assert "keep me" == outside.read_text()
    assert not (runtime / "exit.json").is_symlink()
    assert (
        "deadline reached" == json.loads((runtime / "exit.json").read_text())["reason"]
    )


def test_only_a_regular_file_holding_an_object_is_a_note(tmp_path: Path) -> None:
    """
    A FIFO (whose read would block), a symlink, a JSON list: no note.
    """
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    linked = tmp_path / "link.json"
    good = tmp_path / "good.json"
    good.write_text('{"reason": "x"}')
    linked.symlink_to(good)

    assert read_note(fifo) is None
    assert read_note(listed) is None
    assert read_note(linked) is None
    assert {"reason": "x"} == read_note(good)
