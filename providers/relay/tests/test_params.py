# Copyright 2026 The tether developers. MIT license.
"""
Local validation of config and parameters, and keeping tokens out of sight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog

import tether_relay
from tether.exceptions import ConfigError, InvalidParameterError
from tether_relay import RelayConfig, RelayProvider
from tether_relay._params import parse_token


if TYPE_CHECKING:
    from collections.abc import Callable

    from tether import Session
    from tether.abc import CreateRequest
    from tether_relay.emulator import RelayEmulator


TOKEN = "relay-secret-token-0123456789"


def _provider(**config: Any) -> RelayProvider:
    # parse_* never touch the client.
    return RelayProvider(
        RelayConfig(api_token=TOKEN, **config),
        client=None,  # type: ignore[arg-type]
        name="relay",
    )


def test_public_names() -> None:
    """
    __all__ lists exactly the public names, sorted.
    """
    public = {n for n in dir(tether_relay) if not n.startswith("_")}

    assert sorted(tether_relay.__all__) == tether_relay.__all__
    assert set(tether_relay.__all__) == public - {"emulator"}


def test_config_defaults_and_headers() -> None:
    """
    The default base URL is Edgegap's; auth is "token <TOKEN>".
    """
    config = RelayConfig(api_token=TOKEN)
    options = RelayProvider.client_options(config)

    assert options.base_url == "https://api.edgegap.com"
    assert f"token {TOKEN}" == options.headers["Authorization"]
    assert config.ready_timeout == 20.0


@pytest.mark.parametrize(
    "settings",
    [
        {"api_token": ""},
        {"api_token": f"token {TOKEN}"},
        {"api_token": "two words"},
        {"api_token": TOKEN, "base_url": "api.edgegap.com"},
        {"api_token": TOKEN, "ready_timeout": 0},
        {"api_token": TOKEN, "poll_multiplier": 0.5},
        {"api_token": TOKEN, "poll_initial": -1},
        {"api_token": TOKEN, "cleanup_timeout": 0},
        {"api_token": TOKEN, "max_list_pages": 0},
    ],
)
def test_bad_config_is_config_error(settings: dict[str, Any]) -> None:
    """
    Bad config values raise ConfigError before anything is sent.
    """
    with pytest.raises(ConfigError) as info:
        RelayConfig(**settings)

    assert TOKEN not in str(info.value)


def test_token_never_shows() -> None:
    """
    The API token is absent from config and provider reprs.
    """
    config = RelayConfig(api_token=TOKEN)
    provider = _provider()

    assert TOKEN not in repr(config)
    assert TOKEN not in str(config)
    assert TOKEN not in repr(provider)
    assert TOKEN not in repr(RelayProvider.client_options(config))


def test_parse_create_normalises() -> None:
    """
    parse_create returns JSON-like params: normalised IPs, filters, webhook.
    """
    params = _provider().parse_create(
        {
            "users": [" 1.1.1.1", {"ip": "2606:4700:4700:0:0:0:0:1111"}],
            "filters": [{"field": "region", "values": ("eu",), "filter_type": "all"}],
            "webhook_url": "https://example.com/hook?x=1",
        }
    )

    assert params == {
        "users": ["1.1.1.1", "2606:4700:4700::1111"],
        "filters": [{"field": "region", "values": ["eu"], "filter_type": "all"}],
        "webhook_url": "https://example.com/hook?x=1",
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "users"),
        ({"users": []}, "users"),
        ({"users": "1.1.1.1"}, "users"),
        ({"users": ["1.1.1.1", "1.1.1.1"]}, "users"),
        ({"users": ["999.1.1.1"]}, "users[0]"),
        ({"users": [1]}, "users[0]"),
        ({"users": [{"ip": "1.1.1.1", "x": 1}]}, "users[0]"),
        ({"users": ["192.168.1.1"]}, "users[0]"),
        ({"users": ["1.1.1.1", "127.0.0.1"]}, "users[1]"),
        ({"users": ["1.1.1.1"], "filters": "x"}, "filters"),
        ({"users": ["1.1.1.1"], "filters": [1]}, "filters[0]"),
        ({"users": ["1.1.1.1"], "filters": [{"field": "x"}]}, "filters[0]"),
        (
            {
                "users": ["1.1.1.1"],
                "filters": [{"field": "", "values": [], "filter_type": "any"}],
            },
            "filters[0].field",
        ),
        (
            {
                "users": ["1.1.1.1"],
                "filters": [{"field": "a", "values": [1], "filter_type": "any"}],
            },
            "filters[0].values",
        ),
        (
            {
                "users": ["1.1.1.1"],
                "filters": [{"field": "a", "values": [], "filter_type": "none"}],
            },
            "filters[0].filter_type",
        ),
        ({"users": ["1.1.1.1"], "webhook_url": "ftp://x"}, "webhook_url"),
        ({"users": ["1.1.1.1"], "webhook_url": 5}, "webhook_url"),
        ({"users": ["1.1.1.1"], "ttl": 5}, "ttl"),
    ],
)
def test_parse_create_rejects(params: dict[str, Any], field: str) -> None:
    """
    Every bad create parameter is an InvalidParameterError naming its field.
    """
    with pytest.raises(InvalidParameterError) as info:
        _provider().parse_create(params)

    assert field == info.value.field
    assert info.value.provider == "relay"
    assert info.value.allowed


def test_private_ips_allowed_by_config() -> None:
    """
    allow_private_ips lets loopback and private users through (for tests).
    """
    params = _provider(allow_private_ips=True).parse_create({"users": ["127.0.0.1"]})

    assert params["users"] == ["127.0.0.1"]


def test_parse_update() -> None:
    """
    parse_update takes authorize/revoke lists (a lone string is one IP).
    """
    changes = _provider().parse_update({"authorize": "1.1.1.1", "revoke": ["10.0.0.1"]})

    assert changes == {"authorize": ["1.1.1.1"], "revoke": ["10.0.0.1"]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({}, "authorize"),
        ({"authorize": []}, "authorize"),
        ({"lifetime": 5}, "lifetime"),
        ({"authorize": ["x"]}, "authorize[0]"),
        ({"authorize": ["10.0.0.1"]}, "authorize[0]"),
        ({"authorize": ["1.1.1.1"], "revoke": ["1.1.1.1"]}, "revoke"),
    ],
)
def test_parse_update_rejects(changes: dict[str, Any], field: str) -> None:
    """
    Bad updates are refused locally, naming the field.
    """
    with pytest.raises(InvalidParameterError) as info:
        _provider().parse_update(changes)

    assert field == info.value.field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3500589645, 3500589645),
        (2**32 - 1, 2**32 - 1),
        (2**40, 2**40),
        ("4294967295", 4294967295),
        (None, None),
        (True, None),
        (-1, None),
        (1.5, None),
    ],
)
def test_tokens_are_whole_ints(raw: object, expected: int | None) -> None:
    """
    Tokens stay Python ints of any size; non-integers are ignored.
    """
    assert expected == parse_token(raw)


def test_lifetime_has_no_default_and_no_bounds() -> None:
    """
    No server TTL: no default lifetime, and any user lifetime is kept as is.
    """
    provider = _provider()

    assert provider.lifetime_for(None, {}) is None
    assert provider.lifetime_for(86_400 * 30, {}) == 86_400 * 30
    assert provider.capabilities.server_ttl is False


async def test_no_secret_in_logs_data_or_errors(
    make_provider: Callable[..., RelayProvider],
    new_request: Callable[..., CreateRequest],
    as_session: Callable[..., Session],
    emulator: RelayEmulator,
) -> None:
    """
    Through a whole lifecycle, no token reaches logs, session data or params.
    """
    provider = make_provider()
    with structlog.testing.capture_logs() as logs:
        request = new_request(provider, users=["1.1.1.1", "8.8.8.8"])
        remote = await provider.create(request)
        session = as_session(remote)
        await provider.ping(session)
        await provider.update(
            session,
            provider.parse_update({"authorize": ["9.9.9.9"], "revoke": ["8.8.8.8"]}),
        )
        user = await provider.authorize_user(session, "4.4.4.4")
        creds = await provider.credentials(session)
        await provider.revoke_user(session, "4.4.4.4")
        await provider.close(session)
    secrets = {TOKEN, str(creds.session_token), str(user.authorization_token)}
    secrets |= {str(u.authorization_token) for u in creds.users}
    visible = " ".join(
        [
            repr(logs),
            repr(session),
            repr(session.to_dict()),
            repr(dict(request.params)),
            repr(creds),
            repr(user),
            repr(provider),
        ]
    )

    assert len(secrets) >= 4
    assert not [s for s in secrets if s in visible]
    assert {"tether.relay.session_created", "tether.relay.session_deleted"} <= {
        e["event"] for e in logs
    }


def test_entry_point_loads_the_provider() -> None:
    """
    The distribution registers relay in the tether.providers group.
    """
    from importlib.metadata import entry_points  # noqa: PLC0415

    found = {ep.name: ep for ep in entry_points(group="tether.providers")}

    assert found["relay"].value == "tether_relay:RelayProvider"
    assert found["relay"].load() is RelayProvider
