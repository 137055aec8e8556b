"""
Finding emulators: the ``tether.emulators`` entry-point group.

Providers publish their local emulators there, under the provider's name, as an
:class:`~tether.testing.EmulatorFactory`. Listing imports nothing; an emulator is
imported and built only when asked for, and one that fails to import or build
breaks only its own name.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from tether._registry import _dist
from tether.exceptions import (
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderValidationError,
)
from tether.testing._emulation import DemoScript, Emulator


GROUP: Final = "tether.emulators"
#: Demos of providers that need no emulator (they run for real, on this
#: machine): a factory of a :class:`~tether.testing.DemoScript` per provider.
DEMO_GROUP: Final = "tether.demos"


def _scan(
    eps: Iterable[EntryPoint] | None, group: str = GROUP
) -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    seen: set[tuple[str, str, str | None]] = set()
    for ep in entry_points(group=group) if eps is None else eps:
        key = (ep.name, ep.value, _dist(ep)[0])
        if key not in seen:
            # One distribution seen twice on sys.path is not a clash.
            seen.add(key)
            found.setdefault(ep.name, []).append(ep)
    return found


def emulator_names(eps: Iterable[EntryPoint] | None = None) -> list[str]:
    """
    The names of the installed emulators, sorted. Imports nothing.

    Args:
        eps: Entry points to use instead of the installed ones.
    """
    return sorted(_scan(eps))


def build_emulator(name: str, eps: Iterable[EntryPoint] | None = None) -> Emulator:
    """
    Import the emulator *name* and build a fresh one.

    Raises:
        ProviderNotFoundError: No emulator has that name (``available`` lists
            those that are installed).
        ProviderLoadError: It fails to import or to build, or two
            distributions claim the name.
        ProviderValidationError: The entry point is not a factory of
            :class:`~tether.testing.Emulator`.
    """
    scanned = _scan(eps)
    found = scanned.get(name)
    if not found:
        known = sorted(scanned)
        msg = f"no emulator named {name!r}; " + (
            f"installed: {', '.join(known)}" if known else "none is installed"
        )
        raise ProviderNotFoundError(msg, name=name, available=known)
    dists = [d for ep in found if (d := _dist(ep)[0])]
    if len(found) > 1:
        msg = f"emulator name {name!r} is claimed by {len(found)} distributions: " + (
            " and ".join(f"{_dist(ep)[0] or '?'} ({ep.value})" for ep in found)
        )
        raise ProviderLoadError(
            msg, name=name, entry_point=found[0].value, distributions=dists
        )
    ep = found[0]
    where = f"{ep.value}{', from ' + dists[0] if dists else ''}"
    try:
        factory = ep.load()
    except Exception as exc:
        msg = (
            f"emulator {name!r} ({where}) failed to import: {type(exc).__name__}: {exc}"
        )
        raise ProviderLoadError(
            msg, name=name, entry_point=ep.value, distributions=dists
        ) from exc
    if not callable(factory):
        msg = f"emulator {name!r} ({where}) is not callable"
        raise ProviderValidationError(
            msg, name=name, obj=factory, entry_point=ep.value, distributions=dists
        )
    try:
        built = factory()
    except Exception as exc:
        msg = (
            f"emulator {name!r} ({where}) failed to build: {type(exc).__name__}: {exc}"
        )
        raise ProviderLoadError(
            msg, name=name, entry_point=ep.value, distributions=dists
        ) from exc
    if not isinstance(built, Emulator):
        msg = (
            f"emulator {name!r} ({where}) built {type(built).__name__}, "
            "not a tether.testing.Emulator"
        )
        raise ProviderValidationError(
            msg, name=name, obj=built, entry_point=ep.value, distributions=dists
        )
    return built


def demo_names() -> list[str]:
    """
    The providers with a demo that needs no emulator, sorted. Imports nothing.
    """
    return sorted(_scan(None, DEMO_GROUP))


def build_demo(name: str) -> DemoScript:
    """
    Import the ``tether.demos`` entry point *name* and build its script.

    Raises:
        ProviderLoadError: It fails to import or to build.
        ProviderValidationError: It does not build a DemoScript.
    """
    found = _scan(None, DEMO_GROUP).get(name)
    if not found:
        msg = f"no demo named {name!r}"
        raise ProviderNotFoundError(msg, name=name, available=demo_names())
    ep = found[0]
    try:
        built = ep.load()()
    except Exception as exc:
        msg = f"demo {name!r} ({ep.value}) failed to build: {type(exc).__name__}: {exc}"
        raise ProviderLoadError(msg, name=name, entry_point=ep.value) from exc
    if not isinstance(built, DemoScript):
        msg = (
            f"demo {name!r} ({ep.value}) built {type(built).__name__}, not a DemoScript"
        )
        raise ProviderValidationError(msg, name=name, obj=built, entry_point=ep.value)
    return built
