"""
The documentation's tables and reference agree with the code.

Its examples are whole files in ``docs/examples/``, run by
``tests/test_docs_examples.py``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import tether
import tether.exceptions
import tether.stores
import tether.testing
from tether._session import TRANSITIONS


ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


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


_PROVIDERS = {
    "tether_sandbox": "SandboxEmulator",
    "tether_relay": "RelayEmulator",
    "tether_sipher": "SipherEmulator",
    "tether_morpheus": "MorpheusEmulator",
}


@pytest.mark.parametrize(("package", "emulator"), sorted(_PROVIDERS.items()))
def test_api_page_documents_each_provider(package: str, emulator: str) -> None:
    """
    The API page documents each first-party provider's ``__all__`` (automodule
    with members, which follows ``__all__``) and its emulator class.
    """
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    module = importlib.import_module(package)
    emulators = importlib.import_module(f"{package}.emulator")

    assert re.search(
        rf"\.\. automodule:: {package}\n   :members:\n   :imported-members:\n", text
    )
    assert module.__all__
    assert rf".. autoclass:: {package}.emulator.{emulator}" in text
    assert hasattr(emulators, emulator)


def test_api_page_documents_the_providers_without_an_emulator() -> None:
    """
    A first-party provider with no emulator (``local``) is on the API page too.
    """
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    module = importlib.import_module("tether_local")

    assert re.search(
        r"\.\. automodule:: tether_local\n   :members:\n   :imported-members:\n", text
    )
    assert "LocalProvider" in module.__all__


def test_api_page_documents_the_stores_and_otel() -> None:
    """
    The stores' public names and ``tether.otel`` are on the API page.
    """
    text = (DOCS / "api.md").read_text(encoding="utf-8")

    missing = [
        name
        for name in tether.stores.__all__
        if not re.search(rf"::\s+tether\.stores\.{name}\b", text)
    ]

    assert [] == missing
    assert ".. automodule:: tether.otel\n   :members:" in text


def test_every_session_state_says_what_it_means() -> None:
    """
    Each SessionState member has a description for the reference: the ``#:``
    comment right above it, which autodoc renders.
    """
    lines = inspect.getsource(tether.SessionState).splitlines()

    undocumented = [
        state.name
        for state in tether.SessionState
        for i, line in enumerate(lines)
        if line.strip().startswith(f"{state.name} = ")
        and not lines[i - 1].strip().startswith("#:")
    ]

    assert [] == undocumented
