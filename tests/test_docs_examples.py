"""
The documentation's examples are whole files, and each runs as a user would run it.

Every Python example of the docs lives in ``docs/examples/`` and is included into
its page with MyST's ``literalinclude``, so the page and the file cannot differ;
README.md keeps an inline copy of the first session, compared with its file
here. Each file runs in a subprocess of its own: with ``python FILE`` on
asyncio, and its ``main()`` under ``anyio.run(main, backend="trio")`` on trio. It
must exit 0 and print nothing on stderr.

An example that talks to a provider's service gets it the way getting started
tells users to: ``tether emulate NAME`` in another process, and the
``TETHER_<NAME>_*`` variables it announces in the example's environment.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether._emulators import emulator_names


ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
FILES = sorted(EXAMPLES.glob("*.py"))

_INCLUDE = re.compile(r"^`{3,}\{literalinclude\}\s+(?P<path>\S+)\s*$", re.MULTILINE)
_PYTHON = re.compile(
    # A code-block's options (":class: runnable") are MyST's, not Python.
    r"^(?P<fence>`{3,})(?:\{code-block\}\s+)?python\s*\n(?::[\w-]+:[^\n]*\n)*"
    r"(?P<source>.*?)^(?P=fence)\s*$",
    re.MULTILINE | re.DOTALL,
)
# Runs main() on another backend than the file's own `anyio.run(main)`.
_ON_BACKEND = (
    "import runpy, sys, anyio; sys.path.insert(0, sys.argv[1]); "
    "namespace = runpy.run_path(sys.argv[2], run_name='example'); "
    "anyio.run(namespace['main'], backend=sys.argv[3])"
)


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _takes_backend(path: Path) -> bool:
    """
    The example has an async ``main()`` that ``anyio.run`` runs, and does not
    name the one backend it runs on (``anyio.run(main, backend="asyncio")``).
    """
    text = path.read_text(encoding="utf-8")
    if re.search(r"anyio\.run\(main, backend=", text):
        return False
    tree = ast.parse(text)
    return any(
        isinstance(node, ast.AsyncFunctionDef) and node.name == "main"
        for node in tree.body
    )


def _services(path: Path) -> list[str]:
    """
    The providers whose emulators the example talks to, through the environment.
    """
    text = path.read_text(encoding="utf-8")
    named = {name.lower() for name in re.findall(r"\bTETHER_([A-Z]+)_", text)}
    return sorted(named & set(emulator_names()))


def _cases() -> list[Any]:
    cases = []
    for path in FILES:
        backends = ["asyncio", "trio"] if _takes_backend(path) else ["asyncio"]
        cases += [
            pytest.param(path, backend, id=f"{path.stem}-{backend}")
            for backend in backends
        ]
    return cases


def _tether() -> list[str]:
    script = shutil.which("tether", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tether._cli"]


def _clean_env() -> dict[str, str]:
    """
    This environment without tether's own variables: each example gets only
    what it is given.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}


@pytest.fixture(name="emulated", scope="module")
def _emulated() -> Iterator[Any]:
    """
    ``tether emulate NAME --port 0`` per provider asked for, started once for
    the module; returns the variables it announced. Stopped with SIGINT at the
    end, as a user stops it with Ctrl-C.
    """
    started: dict[str, tuple[subprocess.Popen[str], dict[str, str]]] = {}

    def env_for(name: str) -> dict[str, str]:
        if name not in started:
            proc = subprocess.Popen(
                [*_tether(), "emulate", name, "--port", "0", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_clean_env(),
            )
            assert proc.stdout is not None
            # The announcement comes once the port listens (no speed assumed:
            # readline waits for it, or returns "" if the process died).
            line = proc.stdout.readline()
            if not line:
                proc.kill()
                _, err = proc.communicate(timeout=60)
                pytest.fail(f"tether emulate {name} did not start: {err}")
            started[name] = (proc, dict(json.loads(line)["env"]))
        return started[name][1]

    yield env_for
    for proc, _ in started.values():
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=60)


def _run(
    path: Path, backend: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    if backend == "asyncio":
        command = [sys.executable, path.name]
    else:
        command = [sys.executable, "-c", _ON_BACKEND, str(EXAMPLES), path.name, backend]
    return subprocess.run(
        command,
        cwd=EXAMPLES,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(("path", "backend"), _cases())
def test_example_runs(path: Path, backend: str, emulated: Any) -> None:
    """
    The example file runs to its end on the backend, exits 0 and prints nothing
    on stderr (its asserts hold; tether says nothing it was not asked to).
    """
    env = _clean_env()
    for name in _services(path):
        env.update(emulated(name))

    result = _run(path, backend, env)

    assert (0, "") == (result.returncode, result.stderr), result.stdout


def test_first_session_on_the_emulator(emulated: Any) -> None:
    """
    Getting started's first session, run as the page says against
    ``tether emulate sandbox``, prints what the page shows.
    """
    env = {**_clean_env(), **emulated("sandbox")}

    result = _run(EXAMPLES / "first_session.py", "asyncio", env)

    lines = result.stdout.splitlines()

    assert 0 == result.returncode, result.stderr
    assert lines.index("1 active") < lines.index("alive")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_first_session_prints_only_its_own_lines(emulated: Any, backend: str) -> None:
    """
    The first session prints its two lines and no log line it did not ask for.
    """
    env = {**_clean_env(), **emulated("sandbox")}

    result = _run(EXAMPLES / "first_session.py", backend, env)

    assert ["1 active", "alive"] == result.stdout.splitlines()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_example_checks_what_it_shows(path: Path) -> None:
    """
    Every example on FakeProvider or an in-process emulator asserts what it
    shows; those on ``tether emulate`` print it, and a test above reads that.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))

    asserts = any(isinstance(node, ast.Assert) for node in ast.walk(tree))

    assert asserts or _services(path)


def test_every_example_is_on_a_page() -> None:
    """
    Each file in docs/examples is included by a page, and each include names a
    file that exists.
    """
    included = {
        (page.parent / m["path"]).resolve()
        if not m["path"].startswith("/")
        else (DOCS / m["path"].lstrip("/")).resolve()
        for page in _pages()
        for m in _INCLUDE.finditer(page.read_text(encoding="utf-8"))
    }

    # A page may also include a test (the guide shows its conformance class).
    examples = {p for p in included if p.is_relative_to(EXAMPLES.resolve())}
    assert {p.resolve() for p in FILES} == examples
    assert all(p.is_file() for p in included)


@pytest.mark.parametrize(
    "page",
    [*_pages(), ROOT / "README.md"],
    ids=[p.relative_to(ROOT).as_posix() for p in [*_pages(), ROOT / "README.md"]],
)
def test_inline_python_is_a_file(page: Path) -> None:
    """
    No Python left inline on a page needs a coroutine around it: pasted into a
    file, each block compiles (no top-level ``await`` or ``async with``).
    """
    broken = []
    for m in _PYTHON.finditer(page.read_text(encoding="utf-8")):
        try:
            compile(m["source"], str(page), "exec", dont_inherit=True)
        except SyntaxError as exc:
            broken.append(f"{exc.msg}: {m['source'].splitlines()[0]!r}")

    assert [] == broken


def test_readme_example_is_the_first_session() -> None:
    """
    README's example is getting started's first session, character for
    character.
    """
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    blocks = [m["source"] for m in _PYTHON.finditer(readme)]

    assert [(EXAMPLES / "first_session.py").read_text(encoding="utf-8")] == blocks
