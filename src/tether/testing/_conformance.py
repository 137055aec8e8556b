"""
The provider conformance suite: what every provider must honour.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import pytest

from tether._config import RetryPolicy
from tether._manager import SessionManager
from tether._redact import Secret
from tether._registry import ProviderRegistry
from tether._session import HealthStatus, SessionState
from tether.abc import CreateRequest, Provider, RemoteSession
from tether.exceptions import (
    InvalidParameterError,
    NotSupportedError,
    RemoteNotFoundError,
)


@attrs.frozen(kw_only=True)
class ConformanceTarget:
    """
    A provider, ready to be checked: its class, config and a way to see the service.

    Attributes:
        name: The provider name.
        provider: The provider class.
        config: Its config (pointing at a running emulator or a live endpoint).
        params: Valid create parameters.
        live: Returns the remote ids the service holds as live now (an
            emulator's ``live_sessions``).
        kill: Ends a session on the service's side, by remote id, as if it died.
        update: Valid update changes, if the provider can update.
        lifetime: A lifetime to create with, if the provider needs one.
        unknown_param: A parameter name the provider must refuse.
    """

    name: str
    provider: type[Provider[Any]]
    config: Mapping[str, Any]
    params: Mapping[str, Any] = attrs.field(factory=dict)
    live: Callable[[], Any]
    kill: Callable[[str], Any]
    update: Mapping[str, Any] | None = None
    lifetime: float | None = None
    unknown_param: str = "__not_a_parameter__"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def _live(target: ConformanceTarget) -> set[str]:
    return {str(x) for x in await _maybe_await(target.live())}


class ProviderConformanceTests:
    """
    Subclass in your provider's tests to check the provider contract.

    Provide a fixture named ``conformance_target`` that returns (or yields) a
    :class:`ConformanceTarget`, with the emulator running for the length of the
    test::

        class TestConformance(ProviderConformanceTests):
            @pytest.fixture(name="conformance_target")
            async def _target(self):
                emulator = SandboxEmulator(api_keys={"k"})
                async with serve_asgi(emulator.app) as server:
                    yield ConformanceTarget(
                        name="sandbox",
                        provider=SandboxProvider,
                        config={"base_url": server.url, "api_key": "k"},
                        live=emulator.live_sessions,
                        kill=emulator.kill,
                    )

    The checks: the lifecycle through :class:`~tether.SessionManager` (create,
    ping ALIVE, close, nothing left live), idempotent close, not-found semantics
    (a session killed on the service is GONE, EXPIRED or not found, and the
    manager marks it LOST or EXPIRED), capability honesty (every operation the
    capabilities deny raises :class:`~tether.exceptions.NotSupportedError`, every
    one they grant works), bad input refused before any request, no secret in
    reprs, and cancellation at many points of create and close leaving nothing
    running.
    """

    @pytest.fixture(name="conformance_target")
    def _conformance_target(self) -> ConformanceTarget:  # pragma: no cover
        msg = "define a 'conformance_target' fixture returning a ConformanceTarget"
        raise NotImplementedError(msg)

    @staticmethod
    def _manager(target: ConformanceTarget, **kw: Any) -> SessionManager:
        registry = ProviderRegistry(entry_points=False)
        registry.register(target.name, target.provider)
        return SessionManager(
            registry=registry,
            config={target.name: dict(target.config)},
            retry=RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
            health_checks=False,
            environ={},
            **kw,
        )

    async def test_lifecycle(self, conformance_target: ConformanceTarget) -> None:
        """
        create → ping (ALIVE) → close through the manager; nothing stays live.
        """
        target = conformance_target
        async with self._manager(target) as manager:
            session = await manager.create(
                target.name, lifetime=target.lifetime, **target.params
            )
            assert SessionState.ACTIVE == session.state
            assert session.remote_id is not None
            assert session.remote_id in await _live(target)
            health = await manager.ping(session)
            assert HealthStatus.ALIVE == health.status
            closed = await manager.close(session)
            assert SessionState.CLOSED == closed.state
            assert session.remote_id not in await _live(target)

    async def test_close_is_idempotent(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        Closing a session twice on the provider is not an error.
        """
        target = conformance_target
        async with self._manager(target, on_exit="keep") as manager:
            session = await manager.create(
                target.name, lifetime=target.lifetime, **target.params
            )
            provider = manager.provider(target.name)
            await provider.close(session)
            await provider.close(session)
            assert session.remote_id not in await _live(target)

    async def test_not_found_semantics(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        A session killed on the service pings as GONE or EXPIRED (or not found),
        and the manager stops calling it live.
        """
        target = conformance_target
        async with self._manager(target) as manager:
            session = await manager.create(
                target.name, lifetime=target.lifetime, **target.params
            )
            assert session.remote_id is not None
            await _maybe_await(target.kill(session.remote_id))
            provider = manager.provider(target.name)
            try:
                health = await provider.ping(session)
            except RemoteNotFoundError:
                pass
            else:
                assert health.status in (HealthStatus.GONE, HealthStatus.EXPIRED)
            await manager.ping(session)
            after = await manager.get(session.id)
            assert after.state in (SessionState.LOST, SessionState.EXPIRED)

    async def test_capabilities_are_honest(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        Every operation the capabilities deny raises NotSupportedError; every
        one they grant works on a live session.
        """
        target = conformance_target
        caps = target.provider.capabilities
        async with self._manager(target) as manager:
            session = await manager.create(
                target.name, lifetime=target.lifetime, **target.params
            )
            provider = manager.provider(target.name)
            checks: dict[str, Callable[[], Awaitable[Any]]] = {
                "get": lambda: provider.get(session),
                "list": provider.list,
                "find": lambda: provider.find(session.id),
                "renew": lambda: provider.renew(session, target.lifetime or 60.0),
                "update": lambda: provider.update(
                    session, provider.parse_update(target.update or {})
                ),
            }
            for operation, call in checks.items():
                granted = getattr(caps, operation)
                if not granted:
                    with pytest.raises(NotSupportedError):
                        await call()
                    continue
                if operation == "update" and target.update is None:
                    msg = "the provider can update: give ConformanceTarget.update"
                    raise AssertionError(msg)
                result = await call()
                if operation == "get":
                    assert isinstance(result, RemoteSession)
                    assert session.remote_id == result.id
                elif operation == "list":
                    assert session.remote_id in {r.id for r in result}
                elif operation == "find":
                    assert isinstance(result, RemoteSession)
                    assert session.remote_id == result.id
                else:
                    assert isinstance(result, RemoteSession)

    async def test_create_reports_a_live_state(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        What create returns maps onto a live tether state and keeps the raw one.
        """
        target = conformance_target
        async with self._manager(target) as manager:
            provider = manager.provider(target.name)
            params = provider.parse_create(target.params)
            lifetime = provider.lifetime_for(target.lifetime, params)
            remote = await provider.create(
                CreateRequest(
                    tether_id="c0ffee" * 5 + "00", params=params, lifetime=lifetime
                )
            )
            try:
                assert remote.state.is_live
                assert remote.id
            finally:
                from tether._session import Session  # noqa: PLC0415

                await provider.close(
                    Session(
                        id="c0ffee" * 5 + "00",
                        provider=target.name,
                        state=SessionState.ACTIVE,
                        remote_id=remote.id,
                        data=remote.data,
                        params=params,
                    )
                )

    async def test_bad_input_sends_nothing(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        An unknown create parameter is refused locally, naming it; the service
        sees no create.
        """
        target = conformance_target
        async with self._manager(target) as manager:
            before = await _live(target)
            with pytest.raises(InvalidParameterError) as info:
                await manager.create(
                    target.name,
                    lifetime=target.lifetime,
                    **{**target.params, target.unknown_param: 1},
                )
            assert target.unknown_param == info.value.field
            assert before == await _live(target)
            assert [] == await manager.list()

    async def test_no_secrets_in_reprs(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        No secret of the config shows in the reprs of config, provider or sessions.
        """
        target = conformance_target
        async with self._manager(target) as manager:
            provider = manager.provider(target.name)
            secrets = [
                v.reveal()
                for v in attrs.asdict(provider.config, recurse=False).values()
                if isinstance(v, Secret)
            ]
            session = await manager.create(
                target.name, lifetime=target.lifetime, **target.params
            )
            blob = "".join(
                [repr(provider), repr(provider.config), repr(session), str(session)]
            )
        for secret in secrets:
            assert secret not in blob

    @pytest.mark.parametrize("delay", [0.0, 0.001, 0.003, 0.01, 0.03])
    async def test_cancellation_leaks_nothing(
        self, conformance_target: ConformanceTarget, delay: float
    ) -> None:
        """
        Cancelling create and close at many points leaves no session running.
        """
        target = conformance_target
        async with self._manager(target) as manager:
            with anyio.move_on_after(delay):
                session = await manager.create(
                    target.name, lifetime=target.lifetime, **target.params
                )
                with anyio.move_on_after(delay):
                    await manager.close(session)
        assert set() == await _live(target)
