"""
Where the CLI's configuration comes from: the config file, the environment, the store.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tether._cli._errors import UsageError
from tether._config import env_var


if TYPE_CHECKING:
    from tether.abc import Store


@attrs.frozen(kw_only=True)
class Settings:
    """
    Where the CLI's configuration came from, resolved.
    """

    config_path: Path | None
    providers: Mapping[str, Mapping[str, Any]]
    store_url: str


def _xdg(variable: str, fallback: str, environ: Mapping[str, str]) -> Path:
    value = environ.get(variable)
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / fallback


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """
    ``$XDG_CONFIG_HOME/tether/config.toml``, by default ``~/.config/tether/config.toml``.
    """
    return _xdg("XDG_CONFIG_HOME", ".config", environ) / "tether" / "config.toml"


def default_store_url(environ: Mapping[str, str] = os.environ) -> str:
    """
    A SQLite file in ``$XDG_STATE_HOME/tether/`` (``~/.local/state/tether/``).
    """
    path = _xdg("XDG_STATE_HOME", ".local/state", environ) / "tether" / "sessions.db"
    return f"sqlite:///{path}"


def load_settings(
    config: str | None, store: str | None, environ: Mapping[str, str]
) -> Settings:
    """
    Read the config file and pick the store, by precedence.

    Raises:
        UsageError: An explicitly named config file is missing, or a file is invalid.
    """
    explicit = config or environ.get("TETHER_CONFIG")
    path: Path | None = (
        Path(explicit).expanduser() if explicit else default_config_path(environ)
    )
    data: dict[str, Any] = {}
    if path is not None and path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            msg = f"cannot read config file {path}: {exc}"
            raise UsageError(msg) from None
    elif explicit:
        msg = f"config file {path} does not exist"
        raise UsageError(msg)
    else:
        path = None
    unknown = sorted(set(data) - {"providers", "store"})
    if unknown:
        msg = (
            f"{path}: unknown setting(s) {', '.join(unknown)} (known: providers, store)"
        )
        raise UsageError(msg)
    tables = data.get("providers", {})
    if not isinstance(tables, dict) or not all(
        isinstance(v, dict) for v in tables.values()
    ):
        msg = f"{path}: [providers] must hold one [providers.<name>] table per provider"
        raise UsageError(msg)
    providers: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        # The environment wins over the file: leave out what it sets, and the
        # manager reads it from there.
        providers[name] = {
            k: v for k, v in table.items() if env_var(name, k) not in environ
        }
    file_store = data.get("store")
    if file_store is not None and not isinstance(file_store, str):
        msg = f"{path}: store must be a URL string"
        raise UsageError(msg)
    store_url = store or environ.get("TETHER_STORE") or file_store
    if not store_url:
        store_url = default_store_url(environ)
    return Settings(config_path=path, providers=providers, store_url=store_url)


def open_store(url: str) -> Store:
    """
    The store at *url*, with the directory of a SQLite file created first.
    """
    from tether.stores import open_store as _open  # noqa: PLC0415

    if url.startswith("sqlite:///"):
        # Create the directory of the file (the default one does not exist yet).
        raw = url.removeprefix("sqlite:///").split("?", 1)[0]
        if raw:
            try:
                Path(raw).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                msg = f"cannot create the store's directory: {exc}"
                raise UsageError(msg) from None
    return _open(url)
