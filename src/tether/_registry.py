"""
Finding providers: the ``tether.providers`` entry-point group, and registration by code.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final

import attrs

from tether._log import EVENT_PROVIDER_LOAD_FAILED, EVENT_PROVIDER_LOADED, logger
from tether.abc import API_VERSION, Provider
from tether.exceptions import (
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderValidationError,
)


GROUP: Final = "tether.providers"


@attrs.frozen(kw_only=True)
class ProviderInfo:
    """
    What the registry knows about one provider, without importing it.

    Attributes:
        name: The provider name.
        source: ``"entry-point"`` or ``"registered"``.
        value: The entry point's value (``"module:Class"``), or the class's path.
        distribution: The distribution that declares it, if any.
        version: That distribution's version, if known.
        loaded: Whether it has been imported.
        error: Why it cannot be loaded, once that is known (or a name clash).
    """

    name: str
    source: str
    value: str
    distribution: str | None = None
    version: str | None = None
    loaded: bool = False
    error: str | None = None


def _dist(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.name, dist.version


@attrs.define
class ProviderRegistry:
    """
    The providers a manager can use.

    Entry points in the ``tether.providers`` group are scanned once, on first
    use, keeping names and values only: nothing is imported until a provider is
    asked for. A plugin that fails to import, or two distributions that claim one
    name, break only that name, and raise :class:`~tether.exceptions.ProviderLoadError`
    when it is asked for.

    Args:
        entry_points: Whether to discover installed plugins. ``False`` gives an
            empty registry for tests and apps that register by code.
        group_entries: Entry points to use instead of the installed ones.
    """

    _use_entry_points: bool = attrs.field(default=True, alias="entry_points")
    _group_entries: Iterable[EntryPoint] | None = attrs.field(
        default=None, alias="group_entries"
    )
    _registered: dict[str, type[Provider[Any]]] = attrs.field(factory=dict, init=False)
    _loaded: dict[str, type[Provider[Any]]] = attrs.field(factory=dict, init=False)
    _errors: dict[str, ProviderLoadError] = attrs.field(factory=dict, init=False)
    _scanned: dict[str, list[EntryPoint]] | None = attrs.field(default=None, init=False)

    def _scan(self) -> dict[str, list[EntryPoint]]:
        if self._scanned is None:
            found: dict[str, list[EntryPoint]] = {}
            if self._use_entry_points:
                eps = (
                    self._group_entries
                    if self._group_entries is not None
                    else entry_points(group=GROUP)
                )
                seen: set[tuple[str, str, str | None]] = set()
                for ep in eps:
                    key = (ep.name, ep.value, _dist(ep)[0])
                    if key in seen:
                        # One distribution seen twice on sys.path is not a clash.
                        continue
                    seen.add(key)
                    found.setdefault(ep.name, []).append(ep)
            self._scanned = found
        return self._scanned

    def register(
        self, name: str, provider: type[Provider[Any]], *, replace: bool = False
    ) -> None:
        """
        Register *provider* under *name*, in code (tests, apps that prefer injection).

        Registration wins over an entry point of the same name.

        Raises:
            ValueError: *name* is registered already and *replace* is false.
            ProviderValidationError: *provider* is not a valid provider class.
        """
        if name in self._registered and not replace:
            msg = f"a provider named {name!r} is registered already (pass replace=True)"
            raise ValueError(msg)
        _validate(name, provider, entry_point=None, distributions=())
        self._registered[name] = provider
        self._loaded.pop(name, None)
        self._errors.pop(name, None)

    def unregister(self, name: str) -> None:
        """
        Forget a provider registered by code (a no-op when absent).
        """
        self._registered.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """
        Every provider name known, sorted. Imports nothing.
        """
        return sorted(set(self._registered) | set(self._scan()))

    def info(self) -> list[ProviderInfo]:
        """
        What is known of each provider, sorted by name. Imports nothing.
        """
        result = []
        scanned = self._scan()
        for name in self.names():
            if name in self._registered:
                cls = self._registered[name]
                result.append(
                    ProviderInfo(
                        name=name,
                        source="registered",
                        value=f"{cls.__module__}:{cls.__qualname__}",
                        loaded=True,
                    )
                )
                continue
            eps = scanned[name]
            dist, version = _dist(eps[0])
            error = self._errors.get(name)
            if len(eps) > 1:
                error = error or _clash(name, eps)
            result.append(
                ProviderInfo(
                    name=name,
                    source="entry-point",
                    value=eps[0].value,
                    distribution=dist,
                    version=version,
                    loaded=name in self._loaded,
                    error=str(error) if error else None,
                )
            )
        return result

    def load(self, name: str) -> type[Provider[Any]]:
        """
        The provider class registered as *name*, imported on first request.

        Raises:
            ProviderNotFoundError: No provider has that name.
            ProviderLoadError: It failed to import, or two distributions claim it.
            ProviderValidationError: It is not a valid provider.
        """
        if name in self._registered:
            return self._registered[name]
        if name in self._loaded:
            return self._loaded[name]
        if name in self._errors:
            raise self._errors[name]
        eps = self._scan().get(name)
        if not eps:
            msg = f"no provider named {name!r}"
            known = self.names()
            msg += (
                f"; installed: {', '.join(known)}" if known else "; none is installed"
            )
            raise ProviderNotFoundError(msg, name=name, available=known) from None
        if len(eps) > 1:
            error = _clash(name, eps)
            self._errors[name] = error
            raise error
        ep = eps[0]
        dist, _ = _dist(ep)
        dists = (dist,) if dist else ()
        try:
            obj = ep.load()
        except Exception as exc:
            error = ProviderLoadError(
                f"provider {name!r} ({ep.value}"
                f"{', from ' + dist if dist else ''}) failed to import: "
                f"{type(exc).__name__}: {exc}",
                name=name,
                entry_point=ep.value,
                distributions=dists,
            )
            error.__cause__ = exc
            self._errors[name] = error
            logger.warning(
                EVENT_PROVIDER_LOAD_FAILED,
                provider=name,
                entry_point=ep.value,
                distribution=dist,
                cause=type(exc).__name__,
            )
            raise error from exc
        try:
            _validate(name, obj, entry_point=ep.value, distributions=dists)
        except ProviderValidationError as error:
            self._errors[name] = error
            raise
        self._loaded[name] = obj
        logger.debug(
            EVENT_PROVIDER_LOADED,
            provider=name,
            entry_point=ep.value,
            distribution=dist,
        )
        return obj  # type: ignore[no-any-return]

    def name_of(self, provider: type[Provider[Any]]) -> str:
        """
        The name *provider* is known by: registered by code, or the entry point
        of the same package (imported only to check it is the same class).

        Raises:
            ProviderNotFoundError: No name refers to that class.
        """
        for known in (self._registered, self._loaded):
            for name, cls in known.items():
                if cls is provider:
                    return name
        package = provider.__module__.partition(".")[0]
        for name, eps in self._scan().items():
            if name in self._registered or len(eps) != 1:
                continue
            if eps[0].value.partition(":")[0].partition(".")[0] != package:
                continue
            try:
                if self.load(name) is provider:
                    return name
            except ProviderLoadError:
                continue
        msg = (
            f"{provider.__qualname__} is not a provider this registry knows: "
            "install its distribution, or register it"
        )
        raise ProviderNotFoundError(
            msg, name=provider.__qualname__, available=self.names()
        )

    @property
    def registered(self) -> Mapping[str, type[Provider[Any]]]:
        """
        A read-only view of the providers registered by code.
        """
        return types.MappingProxyType(self._registered)


def _clash(name: str, eps: list[EntryPoint]) -> ProviderLoadError:
    described = [f"{_dist(ep)[0] or '?'} ({ep.value})" for ep in eps]
    msg = (
        f"provider name {name!r} is claimed by {len(eps)} distributions: "
        + " and ".join(described)
    )
    return ProviderLoadError(
        msg,
        name=name,
        entry_point=eps[0].value,
        distributions=[d for ep in eps if (d := _dist(ep)[0])],
    )


def _validate(
    name: str, obj: object, *, entry_point: str | None, distributions: tuple[str, ...]
) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Provider)):
        msg = (
            f"provider {name!r} ({entry_point or obj!r}) is not a subclass of "
            "tether.abc.Provider"
        )
        raise ProviderValidationError(
            msg,
            name=name,
            obj=obj,
            entry_point=entry_point,
            distributions=distributions,
        )
    version = getattr(obj, "api_version", None)
    if version != API_VERSION:
        msg = (
            f"provider {name!r} is written for plugin API version {version}, "
            f"this tether speaks version {API_VERSION}"
        )
        raise ProviderValidationError(
            msg,
            name=name,
            obj=obj,
            entry_point=entry_point,
            distributions=distributions,
        )
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        msg = f"provider {name!r} does not implement: {missing}"
        raise ProviderValidationError(
            msg,
            name=name,
            obj=obj,
            entry_point=entry_point,
            distributions=distributions,
        )


_default: ProviderRegistry | None = None


def default_registry() -> ProviderRegistry:
    """
    The process-wide registry that managers use unless given one.
    """
    global _default  # noqa: PLW0603 -- one registry per process, like fsspec's
    if _default is None:
        _default = ProviderRegistry()
    return _default


def register_provider(
    name: str, provider: type[Provider[Any]], *, replace: bool = False
) -> None:
    """
    Register *provider* under *name* in the default registry.

    See :meth:`ProviderRegistry.register`.
    """
    default_registry().register(name, provider, replace=replace)
