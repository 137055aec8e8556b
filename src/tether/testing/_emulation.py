"""
Emulators as plugins: what a provider publishes in the ``tether.emulators`` group.

A provider distribution that ships a local emulator of its service registers a
factory under the provider's own name::

    [project.entry-points."tether.emulators"]
    acme = "tether_acme._emulation:emulation"

The factory takes no arguments and returns a fresh :class:`Emulator`: the ASGI
app with its demo data seeded, the configuration a client needs to reach it, and
optionally what ``tether demo`` does with it. ``tether emulate acme`` serves the
app; ``tether demo`` runs the script. The core never imports a provider by name.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from tether.testing._asgi import ASGIApp


if TYPE_CHECKING:
    from tether._config import FailoverPolicy
    from tether._manager import SessionManager
    from tether._session import Session


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


def _optional_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else _frozen_mapping(value)


@attrs.frozen(kw_only=True)
class DemoScript:
    """
    What ``tether demo`` does with one provider on its emulator.

    The demo creates a session with *params* and *lifetime*, pings it, awaits
    *work* and prints the line it returns, applies *update*, closes the session;
    then, with *failover*, creates one more session from the policy it returns
    (the callable may first break something on the emulator) and closes it.

    Attributes:
        params: Parameters of the demo session.
        lifetime: Its lifetime in seconds, or ``None`` for the provider's default.
        update: Changes for :meth:`~tether.SessionManager.update`, or ``None``.
        work: Something provider-specific with the session; returns one line
            that says what happened.
        failover: Builds the :class:`~tether.FailoverPolicy` of a failover.

    .. versionadded:: 0.1.0
    """

    params: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    lifetime: float | None = None
    update: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_optional_mapping
    )
    work: Callable[[SessionManager, Session], Awaitable[str]] | None = attrs.field(
        default=None, eq=False
    )
    failover: Callable[[SessionManager], Awaitable[FailoverPolicy]] | None = (
        attrs.field(default=None, eq=False)
    )


@attrs.frozen(kw_only=True)
class Emulator:
    """
    A provider's emulator, built and seeded, ready to serve.

    Attributes:
        app: The ASGI app.
        config: The provider configuration a client needs besides the URL:
            demo credentials (fakes that only the emulator accepts) and
            options. Kept out of the repr all the same.
        url_field: The configuration field that takes the emulator's URL.
        demo: What ``tether demo`` does with it, or ``None`` to leave it out.

    .. versionadded:: 0.1.0
    """

    app: ASGIApp = attrs.field(repr=False, eq=False)
    config: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, repr=False
    )
    url_field: str = "base_url"
    demo: DemoScript | None = None

    def provider_config(self, url: str) -> dict[str, Any]:
        """
        The provider configuration for a client of the emulator served at *url*.
        """
        return {**self.config, self.url_field: url}


@runtime_checkable
class EmulatorFactory(Protocol):
    """
    What a ``tether.emulators`` entry point names: builds a fresh :class:`Emulator`.

    A plain function with no parameters returning an :class:`Emulator` is one.

    .. versionadded:: 0.1.0
    """

    def __call__(self) -> Emulator: ...
