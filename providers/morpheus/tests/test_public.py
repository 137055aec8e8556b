"""
The public surface of tether_morpheus: ``__all__`` and the package agree.
"""

from __future__ import annotations

import tether_morpheus


def test_all_matches_public_names():
    """
    Every name in ``__all__`` exists, and every public name is in ``__all__``.
    """
    public = {
        name
        for name in vars(tether_morpheus)
        if not name.startswith("_")
        and name != "emulator"  # a submodule, imported by tests
    }

    assert sorted(tether_morpheus.__all__) == sorted(public)


def test_provider_declares_its_capabilities():
    """
    One session per API key, a server-side lifetime, and a long ping interval.
    """
    caps = tether_morpheus.MorpheusProvider.capabilities

    assert caps.max_sessions_per_credential == 1
    assert caps.server_ttl is True
    assert caps.ping_interval >= 600
    assert [caps.update, caps.renew, caps.get, caps.list] == [False] * 4
    # A lost create answer is resolved through the key's current session.
    assert caps.find is True
