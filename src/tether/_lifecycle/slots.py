"""
The providers one manager runs: each loaded, configured and given its HTTP
client on first use, with its circuit breaker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import httpx

from tether._config import build_provider_config
from tether._events import BreakerPolicy, CircuitBreaker
from tether._lifecycle.runtime import ManagerState, Runtime
from tether._log import logger
from tether._registry import ProviderRegistry
from tether._transport import build_client
from tether.abc import ClientOptions, Instrumentation, Provider


ClientFactory = Callable[[str, ClientOptions], httpx.AsyncClient]


def default_client(name: str, options: ClientOptions) -> httpx.AsyncClient:
    return build_client(options)[0]


@attrs.define
class Slot:
    """
    One provider as the manager runs it.
    """

    name: str
    provider: Provider[Any]
    client: httpx.AsyncClient
    ping_interval: float
    breaker: CircuitBreaker
    transport: str = "httpx"
    # The credential's fingerprint: the config is frozen, so it is worked out once.
    credential: str | None = None


class Slots:
    """
    The running providers by name, and every circuit breaker by key.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        registry: ProviderRegistry,
        config: Mapping[str, Any],
        environ: Mapping[str, str],
        client_factory: ClientFactory | None,
        breakers: BreakerPolicy,
        instrumentation: Instrumentation | None,
    ) -> None:
        self._runtime = runtime
        self.registry = registry
        self.config = config
        self.environ = environ
        self._client_factory = client_factory or default_client
        self._breaker_policy = breakers
        self._instrumentation = instrumentation
        self._slots: dict[str, Slot] = {}
        self.breakers: dict[str, CircuitBreaker] = {}

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self._slots.values()))

    def names(self) -> list[str]:
        return sorted(self._slots)

    def loaded(self, name: str) -> Slot | None:
        """
        The provider *name* if it is running already (never loads it).
        """
        return self._slots.get(name)

    def get(self, name: str) -> Slot:
        """
        The running provider *name*, loaded and configured on first use.

        Raises:
            ProviderNotFoundError, ProviderLoadError, ConfigError
        """
        slot = self._slots.get(name)
        if slot is not None and self._runtime.state is ManagerState.OPEN:
            return slot
        self._runtime.check_open()
        cls = self.registry.load(name)
        config = build_provider_config(
            cls.config_class, name, self.config.get(name), self.environ
        )
        options = cls.client_options(config)
        transport: str
        if self._client_factory is default_client:
            client, transport = build_client(options)
        else:
            client, transport = self._client_factory(name, options), "custom"
        logger.debug("tether.provider.client_built", provider=name, transport=transport)
        if self._instrumentation is not None:
            self._instrumentation.instrument_client(name, client)
        try:
            provider = cls(config, client=client, name=name)
            # Set after construction, so subclasses' own __init__ need not pass it.
            provider.clock = self._runtime.clock.time
        except BaseException:
            # A provider that fails to build must not leak its client.
            if self._runtime.tg is not None:
                self._runtime.tg.start_soon(client.aclose)
            raise
        interval = (
            self._runtime.health.interval
            or getattr(config, "ping_interval", None)
            or cls.capabilities.ping_interval
        )
        slot = Slot(
            name=name,
            provider=provider,
            client=client,
            ping_interval=float(interval),
            breaker=self.breaker(name),
            transport=transport,
            credential=provider.credential_id(),
        )
        self._slots[name] = slot
        return slot

    def breaker(self, key: str) -> CircuitBreaker:
        breaker = self.breakers.get(key)
        if breaker is None:
            breaker = self.breakers[key] = CircuitBreaker(
                key=key, policy=self._breaker_policy
            )
        return breaker

    def ping_interval(self, name: str, default: float = 30.0) -> float:
        slot = self._slots.get(name)
        return slot.ping_interval if slot is not None else default

    async def aclose(self) -> None:
        """
        Close every provider and its client, whatever fails.
        """
        for slot in self._slots.values():
            with contextlib.suppress(Exception):
                await slot.provider.aclose()
            with contextlib.suppress(Exception):
                await slot.client.aclose()
        self._slots.clear()
