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


def test_every_exception_is_exported_at_the_top_level() -> None:
    """
    Every name in ``tether.exceptions.__all__`` is ``tether.<name>`` (the
    same object) and in ``tether.__all__``, as httpx re-exports its errors.
    """
    import tether.exceptions  # noqa: PLC0415

    missing = [
        name
        for name in tether.exceptions.__all__
        if getattr(tether, name, None) is not getattr(tether.exceptions, name)
    ]
    unlisted = sorted(set(tether.exceptions.__all__) - set(tether.__all__))

    assert [] == missing
    assert [] == unlisted
