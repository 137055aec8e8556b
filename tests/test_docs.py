"""
The documentation's examples run, and its tables agree with the code.

A block is runnable when it is a MyST ``code-block`` with the ``runnable`` class::

    ```{code-block} python
    :class: runnable

    async with tether.SessionManager(registry=registry, clock=clock) as m:
        ...
    ```

Each runnable block in ``docs/**/*.md`` and ``README.md`` runs on its own, once
per anyio backend (a block whose classes also hold ``continues`` runs after the
runnable blocks before it on its page, in their namespace), as the body of a coroutine (top-level ``await``,
``async with`` and ``async for`` work), with a fresh namespace holding
``tether``, ``anyio``, ``clock`` (a :class:`~tether.testing.ManualClock`),
``backend`` (a :class:`~tether.testing.FakeBackend` on that clock) and
``registry`` (``"fake"``: :class:`~tether.testing.FakeProvider`, and nothing
installed). Every runnable block asserts what it shows.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import tether
import tether.exceptions
import tether.testing
from tether._session import TRANSITIONS


ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\{code-block\}\s+python\s*$")
_OPTION = re.compile(r"^:(?P<name>[\w-]+):\s*(?P<value>.*)$")


@attrs.frozen
class Block:
    """
    One runnable code block: where it is, and its source.
    """

    path: Path
    line: int
    source: str
    prelude: tuple[Block, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _sources() -> list[Path]:
    pages = [p for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    return [*sorted(pages), ROOT / "README.md"]


def _blocks(path: Path) -> list[Block]:
    """
    The runnable blocks of one Markdown file.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        i += 1
        if match is None:
            continue
        fence = match["fence"]
        classes: list[str] = []
        while i < len(lines) and (option := _OPTION.match(lines[i])):
            if option["name"] == "class":
                classes += option["value"].split()
            i += 1
        start = i
        while i < len(lines) and not lines[i].startswith(fence):
            i += 1
        if "runnable" in classes:
            source = "\n".join(lines[start:i]).strip("\n")
            # Line numbers in tracebacks point into the Markdown file.
            first = start + next(
                (n for n, line in enumerate(lines[start:i]) if line.strip()), 0
            )
            prelude: tuple[Block, ...] = ()
            if "continues" in classes and found:
                prelude = (*found[-1].prelude, found[-1])
            found.append(
                Block(path=path, line=first + 1, source=source, prelude=prelude)
            )
        i += 1
    return found


BLOCKS = [block for path in _sources() for block in _blocks(path)]


def _namespace() -> dict[str, Any]:
    clock = tether.testing.ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", tether.testing.FakeProvider)
    return {
        "__name__": "__docs__",
        "tether": tether,
        "anyio": anyio,
        "clock": clock,
        "backend": tether.testing.FakeBackend(clock=clock.time),
        "registry": registry,
    }


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
async def test_example_runs(block: Block) -> None:
    """
    The example runs to its end, and its asserts hold, within ten real seconds.
    """
    namespace = _namespace()

    with anyio.fail_after(10):
        for part in (*block.prelude, block):
            code = compile(
                "\n" * (part.line - 1) + part.source,
                str(part.path),
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                dont_inherit=True,
            )
            # The documentation is ours: running it is the point.
            result = eval(code, namespace)  # noqa: S307
            if inspect.iscoroutine(result):
                await result


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example_asserts(block: Block) -> None:
    """
    Every runnable example checks what it shows, with at least one assert.
    """
    tree = ast.parse(block.source)

    assert any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def test_examples_are_found() -> None:
    """
    The collector sees the runnable examples (a broken parser finds none).
    """
    pages = {b.path.relative_to(DOCS).as_posix() for b in BLOCKS}

    assert {
        "getting-started.md",
        "concepts/lifecycle.md",
        "concepts/policies.md",
        "concepts/events.md",
        "testing.md",
        "writing-a-provider.md",
    } <= pages


def _table(path: Path, heading: str) -> list[list[str]]:
    """
    The body rows of the first Markdown table after *heading*.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return [row for row in rows[1:] if not set("".join(row)) <= set("-: ")]


def _states(cell: str) -> set[tether.SessionState]:
    names = re.findall(r"`([A-Z]+)`", cell)
    return {tether.SessionState[name] for name in names}


def test_lifecycle_table_matches_transitions() -> None:
    """
    The transition table of the lifecycle page is tether._session.TRANSITIONS.
    """
    rows = _table(DOCS / "concepts" / "lifecycle.md", "## Transitions")

    documented = {
        tether.SessionState[row[0].strip("`")]: _states(row[1]) for row in rows
    }

    assert dict(TRANSITIONS) == documented


def test_error_page_names_every_error() -> None:
    """
    The error page's tree names every exception tether.exceptions exports.
    """
    text = (DOCS / "concepts" / "errors.md").read_text(encoding="utf-8")

    missing = [name for name in tether.exceptions.__all__ if name not in text]

    assert [] == missing


def test_events_page_names_every_kind() -> None:
    """
    The events page describes every EventKind.
    """
    rows = _table(DOCS / "concepts" / "events.md", "## Kinds")

    documented = {row[0].strip("`") for row in rows}

    assert {k.name for k in tether.EventKind} == documented


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("tether", tether.__all__),
        ("tether.testing", tether.testing.__all__),
    ],
)
def test_api_page_documents_every_public_name(module: str, names: list[str]) -> None:
    """
    The API page documents every public name (tether.abc and tether.exceptions
    are documented whole, with automodule).
    """
    text = (DOCS / "api.md").read_text(encoding="utf-8")

    missing = [
        name
        for name in names
        if not re.search(rf"::\s+{re.escape(module)}\.{name}\b", text)
    ]

    assert [] == missing
