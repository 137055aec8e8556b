"""
The public surface is exactly what __all__ lists.
"""

from __future__ import annotations

import tether_sipher
from tether_sipher import emulator


def test_all_is_the_public_surface() -> None:
    """
    Every public name of the package is in __all__, and every name there exists.
    """
    public = {n for n in dir(tether_sipher) if not n.startswith("_")}
    modules = {"emulator"}

    assert public - modules - {"annotations"} == set(tether_sipher.__all__)
    assert sorted(tether_sipher.__all__) == tether_sipher.__all__
    assert all(hasattr(emulator, n) for n in emulator.__all__)
