"""
The provider conformance suite: what every provider must honour.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import anyio
import attrs
import pytest

from tether._config import RetryPolicy
from tether._manager import SessionManager
from tether._redact import Secret
from tether._registry import ProviderRegistry
from tether._session import HealthStatus, SessionState
from tether.abc import (
    CodeExecutor,
    CreateRequest,
    ExecutingHandle,
    ExecutionResult,
    Provider,
    RemoteSession,
)
from tether.exceptions import (
    InvalidParameterError,
    NotSupportedError,
    RemoteNotFoundError,
)
from tether.testing._clock import ManualClock


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
        clock: The :class:`~tether.testing.ManualClock` the emulator reads its
            time from (``Emulator(clock=clock.time)``). Given it, the suite also
            checks expiry: a ``server_ttl`` provider reports a session past its
            lifetime as ended, and for one without it the manager closes the
            session on the service at its deadline. ``None`` skips those checks.
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
    clock: ManualClock | None = None


def contract(ok: object, rule: str, observed: str = "") -> None:
    """
    Fail, naming the broken contract *rule* in words, unless *ok*.

    The message reads ``contract: <rule> (<observed>)``, so a provider author
    sees first which promise the provider broke, then what it did instead.
    """
    __tracebackhide__ = True
    if not ok:
        broken(rule, observed)


def broken(rule: str, observed: str = "") -> NoReturn:
    """
    Fail at once, naming the broken contract *rule*: see :func:`contract`.
    """
    __tracebackhide__ = True
    msg = f"contract: {rule}" + (f" ({observed})" if observed else "")
    raise AssertionError(msg)


def _lifetime(target: ConformanceTarget) -> float:
    # A lifetime the provider accepts, for the expiry checks.
    caps = target.provider.capabilities
    lifetime = target.lifetime or caps.default_lifetime or 60.0
    if caps.min_lifetime is not None:
        lifetime = max(lifetime, caps.min_lifetime)
    if caps.max_lifetime is not None:
        lifetime = min(lifetime, caps.max_lifetime)
    return lifetime


class _SendCounter:
    """
    Counts what a provider sends through its HTTP client, while installed.
    """

    def __init__(self, provider: Provider[Any]) -> None:
        self.client = provider.client
        self.sent: list[str] = []
        self._send = self.client.send

    async def _counting(self, request: Any, **kwargs: Any) -> Any:
        self.sent.append(f"{request.method} {request.url.path}")
        return await self._send(request, **kwargs)

    def __enter__(self) -> _SendCounter:
        self.client.send = self._counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.client.send


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
    capabilities deny raises :class:`~tether.exceptions.NotSupportedError`
    without sending a request, every one they grant works), expiry against the
    ``server_ttl`` claim (when :attr:`ConformanceTarget.clock` is given), bad
    input refused before any request, no secret in reprs, and cancellation at
    many points of create and close leaving nothing running. A provider that
    runs code (a :class:`~tether.abc.CodeExecutor`) is checked to keep state
    across executions and to answer with :class:`~tether.abc.ExecutionResult`,
    through itself and through its session handle.

    A failure's message names the contract rule broken, in words, then what the
    provider did: ``contract: <rule> (<observed>)``.
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
            contract(
                SessionState.ACTIVE == session.state,
                "a created session is ACTIVE",
                f"it is {session.state.value}",
            )
            contract(
                session.remote_id is not None,
                "create must report the service's id of the session",
                "remote_id is None",
            )
            contract(
                session.remote_id in await _live(target),
                "a created session is live on the service",
                f"{session.remote_id} is not in ConformanceTarget.live()",
            )
            health = await manager.ping(session)
            contract(
                HealthStatus.ALIVE == health.status,
                "ping must report a fresh session as ALIVE",
                f"ping returned {health.status.name}",
            )
            closed = await manager.close(session)
            contract(
                SessionState.CLOSED == closed.state,
                "a closed session is CLOSED",
                f"it is {closed.state.value}",
            )
            contract(
                session.remote_id not in await _live(target),
                "close must end the session on the service",
                f"{session.remote_id} is still live",
            )

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
            try:
                await provider.close(session)
            except Exception as exc:  # noqa: BLE001
                broken(
                    "closing an already closed session must succeed (close is "
                    "idempotent)",
                    f"the second close raised {type(exc).__name__}: {exc}",
                )
            contract(
                session.remote_id not in await _live(target),
                "close must end the session on the service",
                f"{session.remote_id} is still live",
            )

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
                contract(
                    health.status in (HealthStatus.GONE, HealthStatus.EXPIRED),
                    "ping must report a session the service ended as GONE or "
                    "EXPIRED (or raise RemoteNotFoundError)",
                    f"ping returned {health.status.name}",
                )
            await manager.ping(session)
            after = await manager.get(session.id)
            contract(
                after.state in (SessionState.LOST, SessionState.EXPIRED),
                "the manager must mark a session the service ended LOST or EXPIRED",
                f"it is {after.state.value}",
            )

    async def test_capabilities_are_honest(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        Every operation the capabilities deny raises NotSupportedError without
        sending a request; every one they grant works on a live session: get
        returns it, list contains it, find finds it by tether's id.
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
                "renew": lambda: provider.renew(session, _lifetime(target)),
                "update": lambda: provider.update(
                    session, provider.parse_update(target.update or {})
                ),
            }
            for operation, call in checks.items():
                if not getattr(caps, operation):
                    await self._check_denied(provider, operation, call)
                    continue
                if operation == "update" and target.update is None:
                    msg = "the provider can update: give ConformanceTarget.update"
                    raise AssertionError(msg)
                result = await call()
                self._check_granted(operation, session, result)

    @staticmethod
    async def _check_denied(
        provider: Provider[Any], operation: str, call: Callable[[], Awaitable[Any]]
    ) -> None:
        __tracebackhide__ = True
        rule = (
            f"a provider whose capabilities deny {operation} must raise "
            "NotSupportedError for it, without sending a request"
        )
        with _SendCounter(provider) as counter:
            try:
                result = await call()
            except NotSupportedError:
                pass
            except Exception as exc:  # noqa: BLE001
                broken(rule, f"{operation} raised {type(exc).__name__}")
            else:
                broken(rule, f"{operation} returned {result!r}")
        contract(not counter.sent, rule, f"it sent {', '.join(counter.sent)}")

    @staticmethod
    def _check_granted(operation: str, session: Any, result: Any) -> None:
        __tracebackhide__ = True
        claims = f"a provider that claims {operation} must "
        if operation == "get":
            contract(
                isinstance(result, RemoteSession) and session.remote_id == result.id,
                claims + "return the live session from get",
                f"get returned {result!r}",
            )
        elif operation == "list":
            ids = {r.id for r in result}
            contract(
                session.remote_id in ids,
                claims + "include a live session in list",
                f"{session.remote_id} not among {sorted(ids)}",
            )
        elif operation == "find":
            contract(
                isinstance(result, RemoteSession) and session.remote_id == result.id,
                claims + "find a live session by tether's id",
                f"find({session.id!r}) returned {result!r}",
            )
            contract(
                result.tether_id in (None, session.id),
                claims + "report the tether id it found the session by",
                f"tether_id is {result.tether_id!r}",
            )
        else:
            contract(
                isinstance(result, RemoteSession),
                claims + f"return a RemoteSession from {operation}",
                f"{operation} returned {result!r}",
            )

    async def test_expiry_matches_server_ttl(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        With a clock (``ConformanceTarget.clock``): a provider claiming
        ``server_ttl`` reports a session past its lifetime as EXPIRED or GONE
        (the service ended it); for one without it, the manager expires the
        session at its deadline and closes it on the service.
        """
        target = conformance_target
        clock = target.clock
        if clock is None:
            pytest.skip("no ConformanceTarget.clock: expiry is not checked")
        lifetime = _lifetime(target)
        if target.provider.capabilities.server_ttl:
            await self._check_server_ends(target, clock, lifetime)
        else:
            await self._check_manager_ends(target, clock, lifetime)

    async def _check_server_ends(
        self, target: ConformanceTarget, clock: ManualClock, lifetime: float
    ) -> None:
        __tracebackhide__ = True
        claims = "a provider that claims server_ttl must "
        # The manager's own clock stands still: only the service may end it.
        frozen = ManualClock(start=clock.time())
        async with self._manager(target, clock=frozen) as manager:
            session = await manager.create(
                target.name, lifetime=lifetime, **target.params
            )
            provider = manager.provider(target.name)
            await clock.advance(lifetime + 1)
            try:
                health = await provider.ping(session)
            except RemoteNotFoundError:
                pass
            else:
                contract(
                    health.status in (HealthStatus.EXPIRED, HealthStatus.GONE),
                    claims + "report a session past its lifetime as EXPIRED or GONE",
                    f"ping returned {health.status.name}",
                )
            if provider.capabilities.get:
                remote = await provider.get(session)
                contract(
                    remote is None or not remote.state.is_live,
                    claims + "not get a session past its lifetime as live",
                    f"get returned {remote!r}",
                )
            contract(
                session.remote_id not in await _live(target),
                claims + "end a session on the service at its lifetime",
                f"{session.remote_id} is still live",
            )

    async def _check_manager_ends(
        self, target: ConformanceTarget, clock: ManualClock, lifetime: float
    ) -> None:
        __tracebackhide__ = True
        rule = (
            "without server_ttl, tether's manager expires a session at its "
            "deadline and closes it on the service"
        )
        async with self._manager(target, clock=clock) as manager:
            session = await manager.create(
                target.name, lifetime=lifetime, **target.params
            )
            contract(
                session.expires_at is not None,
                rule,
                "the session has no deadline",
            )
            await clock.advance(lifetime + 1)
            after = await manager.get(session.id)
            # A close that takes real time (a live service, a process to
            # kill in a worker thread) is still under way: wait for it.
            with anyio.move_on_after(30):
                while after.state is SessionState.CLOSING:
                    await anyio.sleep(0.05)
                    after = await manager.get(session.id)
            contract(
                SessionState.EXPIRED == after.state,
                rule,
                f"past its deadline it is {after.state.value}",
            )
            contract(
                session.remote_id not in await _live(target),
                rule,
                f"{session.remote_id} is still live on the service",
            )

    async def test_code_execution_keeps_state(
        self, conformance_target: ConformanceTarget
    ) -> None:
        """
        A provider that declares code execution (:class:`~tether.abc.CodeExecutor`)
        runs code in a session, keeps its state from one execution to the next,
        and answers with :class:`~tether.abc.ExecutionResult`; its handle does too.
        """
        target = conformance_target
        if not issubclass(target.provider, CodeExecutor):
            pytest.skip("the provider does not run code (no CodeExecutor)")
        claims = "a provider that runs code (CodeExecutor) must "
        async with (
            self._manager(target) as manager,
            manager.session(
                target.provider, lifetime=target.lifetime, **target.params
            ) as handle,
        ):
            provider = manager.provider(target.name)
            assert isinstance(provider, CodeExecutor)
            await provider.execute(handle.session, "conformance_x = 42")
            result: Any = await provider.execute(handle.session, "print(conformance_x)")
            contract(
                isinstance(result, ExecutionResult),
                claims + "answer execute with tether.abc.ExecutionResult",
                f"execute returned {type(result).__name__}",
            )
            contract(
                "42\n" == result.stdout,
                claims + "keep state across executions in one session",
                f"stdout {result.stdout!r}, stderr {result.stderr[-200:]!r}",
            )
            contract(
                isinstance(handle, ExecutingHandle),
                claims + "give a session handle with execute (ExecutingHandle)",
                f"the handle is {type(handle).__name__}",
            )
            assert isinstance(handle, ExecutingHandle)
            again: Any = await handle.execute("print(conformance_x)")
            contract(
                isinstance(again, ExecutionResult) and "42\n" == again.stdout,
                claims + "run code through its handle, on the same session",
                f"the handle's execute returned {again!r}",
            )

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
                contract(
                    remote.state.is_live,
                    "create must report a live state",
                    f"it reported {remote.state.value} ({remote.raw_state!r})",
                )
                contract(remote.id, "create must report the service's id", "id empty")
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
        rule = (
            "an unknown create parameter must be refused with "
            "InvalidParameterError naming it, before any request"
        )
        async with self._manager(target) as manager:
            before = await _live(target)
            try:
                await manager.create(
                    target.name,
                    lifetime=target.lifetime,
                    **{**target.params, target.unknown_param: 1},
                )
            except InvalidParameterError as exc:
                contract(
                    target.unknown_param == exc.field, rule, f"field={exc.field!r}"
                )
            else:
                broken(rule, "create succeeded")
            contract(before == await _live(target), rule, "the service got a session")
            contract([] == await manager.list(), rule, "a record was kept")

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
            contract(
                secret not in blob,
                "no secret of the config may show in a repr of the config, the "
                "provider or a session (wrap it in Secret)",
                "a secret was found",
            )

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
        left = await _live(target)
        contract(
            set() == left,
            "cancelling create or close must leave no session running",
            f"still live: {sorted(left)}",
        )
