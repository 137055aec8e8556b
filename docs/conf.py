"""
Sphinx configuration: MyST pages, furo, autodoc of the public API.

Built with ``sphinx-build -n -W --keep-going -b html docs docs/_build/html``:
nitpicky, and every warning is an error.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment


project = "tether"
author = "The tether developers"
copyright = "2026, The tether developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "tether"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

nitpicky = True

# No intersphinx (the docs build offline), so references to the standard
# library and to third-party packages cannot resolve. Each is named here, and
# nothing of ours is: a broken reference to tether is an error.
_EXTERNAL_CLASSES = [
    # The standard library.
    "BaseException",
    "Exception",
    "LookupError",
    "RuntimeError",
    "ValueError",
    "TypeError",
    "abc.ABC",
    "enum.Enum",
    "enum.StrEnum",
    "str",
    "int",
    "float",
    "bool",
    "object",
    "datetime",
    "datetime.datetime",
    "datetime.timedelta",
    "timedelta",
    "typing.Any",
    "typing.Generic",
    "typing.Protocol",
    "Any",
    "Counter",
    "collections.Counter",
    "collections.abc.AsyncIterator",
    "collections.abc.Awaitable",
    "collections.abc.Callable",
    "collections.abc.Collection",
    "collections.abc.Iterable",
    "collections.abc.Iterator",
    "collections.abc.Mapping",
    "collections.abc.MutableMapping",
    "collections.abc.Sequence",
    "contextlib.AbstractContextManager",
    "contextlib.AbstractAsyncContextManager",
    "importlib.metadata.EntryPoint",
    "types.TracebackType",
    "TracebackType",
    "EntryPoint",
    "decimal.Decimal",
    "collections.abc.Iterator",
    "collections.abc.Generator",
    "collections.abc.AsyncGenerator",
    # Third-party packages.
    "httpx.Auth",
    "httpx.Request",
    "opentelemetry.trace.TracerProvider",
    "opentelemetry.metrics.MeterProvider",
    "httpx.AsyncClient",
    "httpx.Client",
    "httpx.Response",
    "builtins.list",
    "pathlib.Path",
    "anyio.CancelScope",
    "anyio.Event",
    "anyio.streams.memory.MemoryObjectReceiveStream",
]
nitpick_ignore = [("py:class", name) for name in _EXTERNAL_CLASSES] + [
    ("py:exc", "BaseException"),
    ("py:exc", "ValueError"),
    ("py:func", "anyio.sleep"),
    ("py:func", "anyio.run"),
    ("py:func", "functools.partial"),
    ("py:class", "anyio.from_thread.BlockingPortal"),
    ("py:class", "tether._sync.T"),
    # The type variable of provider(ProviderClass).
    ("py:class", "tether._sync.PR"),
    ("py:class", "tether._manager.PR"),
    ("py:meth", "httpx.AsyncClient.request"),
    # Ours, but not public: the type variable of a provider's config.
    ("py:class", "tether.abc.ConfigT"),
    ("py:obj", "tether.abc.ConfigT"),
    # ... and of a handle's provider and an operation's result.
    ("py:class", "tether._handle.P"),
    ("py:obj", "tether._handle.P"),
    ("py:class", "tether._handle.T"),
    ("py:class", "tether._manager.H"),
    # A private alias in connect's signature (shown through its tracing wrapper).
    ("py:class", "_Handled"),
    ("py:class", "tether._handle.H"),
    ("py:obj", "tether._handle.H"),
    ("py:class", "H"),
    ("py:class", "BlockingPortal"),
    ("py:class", "SyncSessionLike"),
    ("py:class", "_SyncHandled"),
    ("py:class", "SH"),
    # A provider class, as session() and connect() read its handle type.
    ("py:class", "tether._manager._Handled"),
    # The first-party providers' docstrings (their authors' to fix): names
    # that resolve nowhere in these docs.
    ("py:class", "The service's own health rule"),
    ("py:class", "Secret"),
    ("py:meth", "list"),
    ("py:meth", "Provider.request"),
    ("py:mod", "tether_morpheus._errors"),
    ("py:attr", "handle"),
    ("py:data", "DEFAULT_MODELS"),
    ("py:mod", "tether_sandbox._emulator_routes"),
    ("py:class", "tether_sandbox._session_work.SessionWork"),
    # ... and the handle types of pools, and the sync facade's twins.
    ("py:class", "tether._lifecycle.pools.H"),
    ("py:obj", "tether._lifecycle.pools.H"),
    ("py:class", "tether._sync._SyncHandled"),
    ("py:class", "tether._sync.SH"),
    ("py:obj", "tether._sync.SH"),
]
# Generic annotations in provider signatures that autodoc splits at the comma
# ("Mapping[str", "Callable[[]"): fragments, not names.
nitpick_ignore_regex = [("py:class", r".*\[.*")]


# The public API lives in private modules and is re-exported: a signature that
# mentions ``tether._session.Session`` means the documented ``tether.Session``,
# and ``Secret`` in a docstring of ``tether.abc`` means ``tether.Secret``. Such
# references resolve to the public name of the same object; nothing else does.
_PUBLIC_MODULES = ("tether", "tether.abc", "tether.exceptions", "tether.testing")


def _lookup(path: str) -> Any:
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _public_name(target: str, context: str | None) -> str | None:
    if "." in target:
        if not target.startswith("tether."):
            return None
        obj = _lookup(target)
    elif context is not None and context.startswith("tether"):
        obj = _lookup(f"{context}.{target}")
    else:
        return None
    if obj is None:
        return None
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if getattr(module, name) is obj:
                return f"{module_name}.{name}"
    return None


def _resolve_private(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> Any:
    if node.get("refdomain") != "py":
        return None
    public = _public_name(node["reftarget"], node.get("py:module"))
    if public is None or public == node["reftarget"]:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
    )


# Attribute comments (``#:``) are prose, and often hold a colon. Napoleon would
# read "The manager's time source: use it ..." as a type and a description, so
# attribute and data docstrings skip it: their lines are kept before Napoleon
# runs and put back after.
_PROSE: dict[str, list[str]] = {}


def _keep_prose(  # noqa: PLR0917 -- Sphinx calls event handlers positionally
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if what in ("attribute", "data"):
        _PROSE[name] = list(lines)


def _restore_prose(  # noqa: PLR0917 -- Sphinx calls event handlers positionally
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if name in _PROSE:
        lines[:] = _PROSE.pop(name)


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _resolve_private)
    app.connect("autodoc-process-docstring", _keep_prose, priority=100)
    app.connect("autodoc-process-docstring", _restore_prose, priority=900)
