"""
The Pools page's example is a whole program (``anyio.run(main)``): it runs
in a subprocess, as a user would run it, on each anyio backend.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


PAGE = Path(__file__).resolve().parent.parent / "docs" / "pools.md"
_WHOLE_FILE = re.compile(
    r"^```\{code-block\} python\n:class: whole-file\n\n(?P<source>.*?)\n```$",
    re.DOTALL | re.MULTILINE,
)
# Runs the example with anyio.run defaulting to the chosen backend.
_PRELUDE = """\
import functools, sys
import anyio
anyio.run = functools.partial(anyio.run, backend=sys.argv[1])
"""


def example() -> str:
    """
    The page's whole-file example.
    """
    match = _WHOLE_FILE.search(PAGE.read_text(encoding="utf-8"))
    assert match is not None, "docs/pools.md lost its whole-file example"
    return match["source"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_pools_page_example_runs(backend: str, tmp_path: Path) -> None:
    """
    The example exits 0: every assert in it held.
    """
    script = tmp_path / "pools_example.py"
    script.write_text(_PRELUDE + example(), encoding="utf-8")

    proc = subprocess.run(
        [sys.executable, str(script), backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )

    assert 0 == proc.returncode, proc.stderr
    assert "anyio.run(main)" in example()
