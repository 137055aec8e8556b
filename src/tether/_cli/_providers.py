"""
``tether providers``: what is installed, its version, and what keeps it from working.
"""

from __future__ import annotations

import os
import textwrap

from tether._cli import _output
from tether._cli._context import AddCommand, Context
from tether._cli._errors import EXIT_OK, EXIT_UNAVAILABLE, explain_load_error
from tether._config import build_provider_config
from tether._redact import redact_text
from tether._registry import ProviderInfo, default_registry
from tether.exceptions import ConfigError, ProviderLoadError, ProviderNotFoundError


def register(add: AddCommand) -> None:
    """
    Add ``providers`` to the parser.
    """
    add(
        "providers",
        "list installed providers, their versions, load and config problems",
        _providers,
    )


def _check(ctx: Context, name: str) -> tuple[str | None, str | None]:
    """
    Why the provider does not load, and why its configuration is incomplete.
    """
    try:
        cls = default_registry().load(name)
    except (ProviderLoadError, ProviderNotFoundError) as exc:
        return explain_load_error(exc), None
    try:
        build_provider_config(
            cls.config_class,
            name,
            ctx.settings.providers.get(name),
            os.environ,
        )
    except ConfigError as exc:
        return None, redact_text(str(exc))
    return None, None


def _providers(ctx: Context) -> int:
    registry = default_registry()
    rows = []
    worst = EXIT_OK
    for name in registry.names():
        load_error, config_error = _check(ctx, name)
        if load_error:
            worst = max(worst, EXIT_UNAVAILABLE)
        # After loading: the registry's info now says whether it loaded.
        rows.append((_info(name), load_error, config_error))
    if ctx.json:
        _output.print_json(
            [
                {
                    "name": info.name,
                    "source": info.source,
                    "value": info.value,
                    "distribution": info.distribution,
                    "version": info.version,
                    "ok": load_error is None,
                    "error": load_error,
                    "configured": load_error is None and config_error is None,
                    "config_error": config_error,
                }
                for info, load_error, config_error in rows
            ]
        )
        return worst
    if not rows:
        print("no providers installed (pip install a tether-<name> distribution)")
        return EXIT_OK
    _output.print_table(
        ["NAME", "VERSION", "DISTRIBUTION", "STATUS", "CONFIG"],
        [
            [
                info.name,
                info.version or "-",
                info.distribution or info.source,
                "broken" if load_error else "ok",
                "-" if load_error else ("missing" if config_error else "ok"),
            ]
            for info, load_error, config_error in rows
        ],
        coloured=[3, 4],
    )
    for info, load_error, config_error in rows:
        if load_error or config_error:
            print()
            print(f"{info.name}:")
            print(textwrap.indent(load_error or config_error or "", "  "))
    return worst


def _info(name: str) -> ProviderInfo:
    return next(i for i in default_registry().info() if i.name == name)
