"""
Bad input, generated: only typed errors, and no request reaches a service.

Hypothesis drives the public configuration values and every provider's create
and update parameters with arbitrary values.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tether
from tether.exceptions import ConfigError, TetherError
from tether.testing import FakeProvider, serve_asgi
from tether_morpheus import MorpheusProvider
from tether_morpheus.emulator import MorpheusEmulator
from tether_relay import RelayProvider
from tether_relay.emulator import RelayEmulator
from tether_sandbox import SandboxProvider
from tether_sandbox.emulator import SandboxEmulator
from tether_sipher import SipherProvider
from tether_sipher.emulator import PRO_KEY, SipherEmulator


MORPHEUS_KEY = "sk-PrOp01.0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
SANDBOX_KEY = "instavm_sk_prop_0123456789"
RELAY_TOKEN = "relay-prop-token-0123456789"

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(
            [
                "1.1.1.1",
                "10.0.0.1",
                "solana",
                "llama-3.3-70b",
                "maximum",
                "0x" + "a" * 64,
            ]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=6,
)

PROVIDERS: dict[str, tuple[type[Any], list[str]]] = {
    "fake": (FakeProvider, ["size", "note"]),
    "sandbox": (
        SandboxProvider,
        ["vm_lifetime_seconds", "memory_mb", "vcpu_count", "metadata", "env"],
    ),
    "sipher": (
        SipherProvider,
        [
            "chain",
            "privacy_level",
            "rpc_provider",
            "backend",
            "defaults",
            "default_viewing_key",
        ],
    ),
    "relay": (
        RelayProvider,
        ["users", "filters", "webhook_url", "authorize", "revoke"],
    ),
    "morpheus": (
        MorpheusProvider,
        ["model", "bid_id", "approve", "direct_payment", "failover"],
    ),
}


def params_for(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.one_of(st.sampled_from(names), st.text(min_size=1, max_size=8))
    return st.dictionaries(keys, values, max_size=4)


def refuse(request: httpx.Request) -> httpx.Response:
    msg = f"a request was sent: {request.method} {request.url}"
    raise AssertionError(msg)


def offline(name: str) -> Any:
    """
    The provider with a client that fails the test if it is ever used.
    """
    cls, _ = PROVIDERS[name]
    config = {
        "fake": {},
        "sandbox": {"api_key": SANDBOX_KEY},
        "sipher": {"api_key": PRO_KEY},
        "relay": {"api_token": RELAY_TOKEN},
        "morpheus": {"api_key": MORPHEUS_KEY},
    }[name]
    built = cls.config_class(**config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    return cls(built, client=client, name=name)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_parameters_raise_only_typed_errors(name: str) -> None:
    """
    parse_create and parse_update, on arbitrary input, return a dict or raise a
    TetherError; they never crash otherwise, and never touch the network.
    """
    provider = offline(name)
    names = PROVIDERS[name][1]

    @settings(max_examples=150, deadline=None)
    @given(params=params_for(names), lifetime=st.one_of(st.none(), values))
    def check(params: dict[str, Any], lifetime: Any) -> None:
        for parse in (provider.parse_create, provider.parse_update):
            try:
                parsed = parse(params)
            except TetherError:
                continue
            assert isinstance(parsed, dict)
        with contextlib.suppress(TetherError):
            provider.lifetime_for(lifetime, {}) if isinstance(
                lifetime, int | float | type(None)
            ) else None

    check()


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (
            tether.RetryPolicy,
            ["attempts", "wait_initial", "wait_max", "timeout", "retry_after_max"],
        ),
        (
            tether.HealthPolicy,
            [
                "enabled",
                "interval",
                "jitter",
                "failures_before_lost",
                "max_concurrent",
                "lease_ttl",
            ],
        ),
        (tether.AdmissionPolicy, ["mode", "timeout"]),
        (tether.BreakerPolicy, ["failure_threshold", "cooldown"]),
    ],
)
def test_policies_raise_config_errors(cls: type[Any], fields: list[str]) -> None:
    """
    Policies built from arbitrary values are valid or raise ConfigError.
    """

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(fields), values, max_size=len(fields)))
    def check(kwargs: dict[str, Any]) -> None:
        with contextlib.suppress(ConfigError):
            cls(**kwargs)

    check()


@settings(max_examples=100, deadline=None)
@given(st.one_of(values, st.lists(values, max_size=3)))
def test_failover_policy_refuses_junk(candidates: Any) -> None:
    """
    A FailoverPolicy of anything but Candidates raises ConfigError.
    """
    with pytest.raises(ConfigError):
        tether.FailoverPolicy(candidates=candidates)


async def _serve(name: str) -> tuple[Any, dict[str, Any]]:
    if name == "sandbox":
        return SandboxEmulator(api_keys=(SANDBOX_KEY,)), {"api_key": SANDBOX_KEY}
    if name == "sipher":
        return SipherEmulator(), {"api_key": PRO_KEY}
    if name == "relay":
        return RelayEmulator(tokens=(RELAY_TOKEN,), ready_delay=0.0), {
            "api_token": RELAY_TOKEN
        }
    return MorpheusEmulator(api_keys=[MORPHEUS_KEY]), {"api_key": MORPHEUS_KEY}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("name", ["sandbox", "sipher", "relay", "morpheus"])
def test_bad_create_sends_no_request(name: str, backend: str) -> None:
    """
    Through the manager, parameters the provider refuses locally raise that
    typed error, and the emulator receives no request at all.
    """
    provider = offline(name)

    async def attempt(params: dict[str, Any], expected: type[BaseException]) -> None:
        emulator, config = await _serve(name)
        registry = tether.ProviderRegistry(entry_points=False)
        registry.register(name, PROVIDERS[name][0])
        async with serve_asgi(emulator.app) as server:
            async with tether.SessionManager(
                registry=registry,
                config={name: {**config, "base_url": server.url}},
                health_checks=False,
                environ={},
            ) as manager:
                with pytest.raises(expected):
                    await manager.create(name, **params)
            assert 0 == server.request_count

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.filter_too_much],
    )
    @given(params=params_for(PROVIDERS[name][1]))
    def check(params: dict[str, Any]) -> None:
        try:
            provider.parse_create(params)
        except TetherError as exc:
            anyio.run(attempt, params, type(exc), backend=backend)

    check()


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param(httpx.URL, id="httpx-url"),
        pytest.param(lambda url: url.encode(), id="bytes"),
        pytest.param(lambda url: [url], id="list"),
        pytest.param(lambda _: 42, id="int"),
        pytest.param(lambda _: None, id="none"),
    ],
)
@pytest.mark.parametrize("name", ["sandbox", "sipher", "relay", "morpheus"])
async def test_a_base_url_that_is_not_a_string_is_refused_before_any_request(
    name: str, base_url: Any
) -> None:
    """
    A ``base_url`` of another type than str, even one httpx would take (an
    ``httpx.URL`` or bytes of the emulator's own address), is an
    InvalidParameterError naming the field when the provider is first used,
    never an AttributeError or TypeError from inside; the emulator receives
    no request.
    """
    emulator, config = await _serve(name)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register(name, PROVIDERS[name][0])
    async with serve_asgi(emulator.app) as server:
        async with tether.SessionManager(
            registry=registry,
            config={name: {**config, "base_url": base_url(server.url)}},
            health_checks=False,
            environ={},
        ) as manager:
            with pytest.raises(tether.exceptions.InvalidParameterError) as info:
                await manager.create(name)
        assert 0 == server.request_count

    assert ("base_url", name) == (info.value.field, info.value.provider)
