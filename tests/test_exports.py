"""
The public surface: __all__ and the names a module offers stay in step.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import TypeVar

import pytest

import tether


@pytest.mark.parametrize(
    "module",
    ["tether", "tether.abc", "tether.exceptions", "tether.testing", "tether.stores"],
)
def test_all_is_exactly_the_public_names(module: str) -> None:
    """
    Every name in __all__ exists, and every public name defined there is in __all__.
    """
    mod = importlib.import_module(module)

    def defined_here(value: object) -> bool:
        home = getattr(value, "__module__", None) or ""
        return home == module or home.startswith(f"{module}._")

    public = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and not isinstance(value, TypeVar)
        and defined_here(value)
    }

    assert sorted(mod.__all__) == sorted(set(mod.__all__))
    assert all(hasattr(mod, name) for name in mod.__all__)
    assert public <= set(mod.__all__), sorted(public - set(mod.__all__))


def test_version_is_the_distribution_version() -> None:
    """
    tether.__version__ comes from the installed metadata.
    """
    assert version("tether") == tether.__version__
