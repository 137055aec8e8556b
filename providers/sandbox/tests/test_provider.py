"""
The provider against the emulator, over a real socket: every operation, local
validation, error classification, and secrets kept out of sight.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

import attrs
import httpx
import pytest
import structlog

from tether import Health, HealthStatus, Session, SessionState
from tether.abc import CreateRequest, RemoteSession
from tether.exceptions import (
    AuthError,
    ConfigError,
    ConflictError,
    InvalidParameterError,
    NotSupportedError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RateLimitedError,
    RequestRejectedError,
    SessionClosedError,
    SessionExpiredError,
)
from tether.testing import ASGIServer, Fault, ManualClock, serve_asgi
from tether_sandbox import (
    DEFAULT_BASE_URL,
    ExecutionResult,
    SandboxConfig,
    SandboxProvider,
)
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


def as_session(remote: RemoteSession, tether_id: str = "t-1", **kw: Any) -> Session:
    """
    The Session a manager would hold after create.
    """
    return Session(
        id=tether_id,
        provider="sandbox",
        state=SessionState.ACTIVE,
        remote_id=remote.id,
        raw_state=remote.raw_state,
        expires_at=remote.expires_at,
        data=remote.data,
        **kw,
    )


def merged(session: Session, health: Health) -> Session:
    """
    The session after a manager merged a ping's data.
    """
    return attrs.evolve(session, data={**session.data, **health.data})


def at(clock: ManualClock, seconds: float = 0) -> datetime:
    return datetime.fromtimestamp(clock.time() + seconds, UTC)


async def make(
    provider: SandboxProvider, tether_id: str = "t-1", **params: Any
) -> Session:
    lifetime = params.pop("lifetime", None)
    parsed = provider.parse_create(params)
    life = provider.lifetime_for(lifetime, parsed)
    remote = await provider.create(
        CreateRequest(tether_id=tether_id, params=parsed, lifetime=life)
    )
    return as_session(remote, tether_id, lifetime=life)


# -- config ---------------------------------------------------------------------


def test_config_defaults_and_hides_the_key() -> None:
    """
    The base URL defaults to InstaVM's; the key never shows in repr or str.
    """
    config = SandboxConfig(api_key=KEY)

    assert config.base_url == DEFAULT_BASE_URL == "https://api.instavm.io"
    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert config.api_key.reveal() == KEY


@pytest.mark.parametrize(
    "fields",
    [
        {"api_key": ""},
        {"api_key": "with space"},
        {"api_key": KEY, "base_url": "ftp://x"},
        {"api_key": KEY, "timeout": 0},
    ],
)
def test_config_rejects_bad_values(fields: dict[str, Any]) -> None:
    """
    Empty or malformed keys and non-HTTP URLs fail before any request.
    """
    with pytest.raises((ConfigError, ValueError)) as info:
        SandboxConfig(**fields)

    assert KEY not in str(info.value)


def test_client_options_send_the_key_as_x_api_key() -> None:
    """
    Auth is the ``X-API-Key`` header (Bearer is for dashboard tokens).
    """
    options = SandboxProvider.client_options(SandboxConfig(api_key=KEY, timeout=7))

    assert options.headers["X-API-Key"] == KEY
    assert "Authorization" not in options.headers
    assert options.timeout == 7
    assert KEY not in repr(options)


def test_entry_point_names_the_provider() -> None:
    """
    The distribution registers ``sandbox`` in ``tether.providers``.
    """
    [ep] = [e for e in entry_points(group="tether.providers") if e.name == "sandbox"]

    assert ep.value == "tether_sandbox:SandboxProvider"
    assert ep.load() is SandboxProvider


def test_capabilities_are_honest() -> None:
    """
    No update, no renew; get, list, find; the service ends VMs itself.
    """
    caps = SandboxProvider.capabilities

    assert (caps.update, caps.renew, caps.get, caps.list, caps.find) == (
        False,
        False,
        True,
        True,
        True,
    )
    assert caps.server_ttl is True
    assert (caps.min_lifetime, caps.default_lifetime, caps.max_lifetime) == (
        20,
        300,
        86400,
    )


# -- parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "allowed"),
    [
        ({"vm_lifetime_seconds": 19}, "vm_lifetime_seconds", "20 to 86400"),
        ({"vm_lifetime_seconds": 86401}, "vm_lifetime_seconds", "20 to 86400"),
        ({"vm_lifetime_seconds": 30.5}, "vm_lifetime_seconds", "20 to 86400"),
        ({"vm_lifetime_seconds": "60"}, "vm_lifetime_seconds", "20 to 86400"),
        ({"memory_mb": 127}, "memory_mb", "128 to 8192"),
        ({"memory_mb": 8193}, "memory_mb", "128 to 8192"),
        ({"memory_mb": True}, "memory_mb", "128 to 8192"),
        ({"vcpu_count": 3}, "vcpu_count", "1, 2, 4, 6 or 8"),
        ({"vcpu_count": 2.5}, "vcpu_count", "1, 2, 4, 6 or 8"),
        ({"metadata": ["a"]}, "metadata", "mapping"),
        ({"metadata": {"tether_id": "x"}}, "metadata", "any key but"),
        ({"metadata": {"a": {1, 2}}}, "metadata", "JSON"),
        ({"env": {"A": 1}}, "env", "string"),
        ({"env": "A=1"}, "env", "string"),
        ({"gpu": True}, "gpu", "vm_lifetime_seconds, memory_mb"),
    ],
)
async def test_parse_create_names_field_and_allowed(
    provider: SandboxProvider, params: dict[str, Any], field: str, allowed: str
) -> None:
    """
    Every limit is checked locally, naming the field and what is allowed.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.parse_create(params)

    assert info.value.field == field
    assert allowed in (info.value.allowed or "")
    assert info.value.provider == "sandbox"


@pytest.mark.parametrize("field", ["memory_mb", "vcpu_count", "vm_lifetime_seconds"])
async def test_whole_number_fields_follow_one_rule(
    provider: SandboxProvider, field: str
) -> None:
    """
    An integral float is that whole number in every field; a fraction is
    refused in every field with one message naming the field.
    """
    whole = {"memory_mb": 256.0, "vcpu_count": 2.0, "vm_lifetime_seconds": 60.0}
    accepted = provider.parse_create({field: whole[field]})
    with pytest.raises(InvalidParameterError) as info:
        provider.parse_create({field: 512.5})

    assert type(accepted[field]) is int
    assert info.value.field == field
    assert str(info.value).startswith(f"sandbox: {field} must be a whole number")


async def test_parse_create_never_echoes_env_values(provider: SandboxProvider) -> None:
    """
    ``env`` values may be secrets: a bad ``env`` is reported without them.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.parse_create({"env": {"TOKEN": "hunter2-secret", "N": 5}})

    assert "hunter2" not in str(info.value)
    assert info.value.value is None


async def test_parse_create_normalises(provider: SandboxProvider) -> None:
    """
    Valid parameters come back JSON-like; integral floats become ints.
    """
    parsed = provider.parse_create(
        {
            "vm_lifetime_seconds": 60.0,
            "memory_mb": 512,
            "vcpu_count": 8,
            "metadata": {"team": "ml", "n": [1, 2]},
            "env": {"A": "1"},
        }
    )

    assert parsed == {
        "vm_lifetime_seconds": 60,
        "memory_mb": 512,
        "vcpu_count": 8,
        "metadata": {"team": "ml", "n": [1, 2]},
        "env": {"A": "1"},
    }
    assert json.loads(json.dumps(parsed)) == parsed


@pytest.mark.parametrize(
    ("lifetime", "params", "expected"),
    [
        (None, {}, 300.0),
        (None, {"vm_lifetime_seconds": 45}, 45.0),
        (60, {}, 60.0),
        (60.0, {"vm_lifetime_seconds": 60}, 60.0),
    ],
)
async def test_lifetime_maps_onto_vm_lifetime_seconds(
    provider: SandboxProvider,
    lifetime: float | None,
    params: dict[str, Any],
    expected: float,
) -> None:
    """
    tether's ``lifetime=`` and ``vm_lifetime_seconds`` are one value.
    """
    assert provider.lifetime_for(lifetime, params) == expected


@pytest.mark.parametrize(
    ("lifetime", "params"),
    [(61, {"vm_lifetime_seconds": 60}), (10, {}), (90000, {}), (60.5, {})],
)
async def test_lifetime_rejects_disagreement_and_out_of_range(
    provider: SandboxProvider, lifetime: float, params: dict[str, Any]
) -> None:
    """
    Both given differently, out of 20..86400, or fractional: refused locally.
    """
    with pytest.raises(InvalidParameterError) as info:
        provider.lifetime_for(lifetime, params)

    assert info.value.field == "lifetime"


async def test_update_is_not_supported(provider: SandboxProvider) -> None:
    """
    The service has no session update (``env`` is create-only).
    """
    with pytest.raises(NotSupportedError) as info:
        provider.parse_update({"env": {"A": "1"}})

    assert info.value.operation == "update"


async def test_update_and_renew_raise_not_supported(
    provider: SandboxProvider, server: ASGIServer
) -> None:
    """
    ``update`` and ``renew`` refuse without sending anything.
    """
    session = await make(provider)
    sent = server.request_count

    with pytest.raises(NotSupportedError):
        await provider.update(session, {"env": {"A": "1"}})
    with pytest.raises(NotSupportedError):
        await provider.renew(session, 60)
    assert server.request_count == sent


# -- create -------------------------------------------------------------------------


async def test_create_tags_metadata_and_sends_key_in_body_and_header(
    provider: SandboxProvider, emulator: SandboxEmulator, server: ASGIServer
) -> None:
    """
    The session is tagged with tether's id and labels; the key goes both ways.
    """
    parsed = provider.parse_create({"metadata": {"team": "ml"}, "vcpu_count": 4})
    remote = await provider.create(
        CreateRequest(
            tether_id="abc123", params=parsed, labels={"job": "1"}, lifetime=60
        )
    )

    snapshot = emulator.session(remote.id)
    assert snapshot["metadata"] == {
        "team": "ml",
        "tether_id": "abc123",
        "tether_labels": {"job": "1"},
    }
    assert (snapshot["vm_lifetime_seconds"], snapshot["vcpu_count"]) == (60, 4)
    assert server.requests[-1].headers["x-api-key"] == KEY
    assert remote.tether_id == "abc123"
    assert remote.expires_at is None  # lazy VM: no deadline yet
    assert remote.data == {
        "vm_id": None,
        "vm_assigned": False,
        "vm_lifetime_seconds": 60,
    }


async def test_create_with_env_knows_its_deadline(
    provider: SandboxProvider, clock: ManualClock
) -> None:
    """
    With ``env`` the VM spawns at create, so the deadline is create + lifetime.
    """
    session = await make(provider, lifetime=120, env={"A": "1"})

    assert session.expires_at == at(clock, 120)


async def test_create_sends_the_default_lifetime(
    provider: SandboxProvider, emulator: SandboxEmulator
) -> None:
    """
    Without a lifetime the service default (300) is sent explicitly.
    """
    session = await make(provider)

    assert session.remote_id is not None
    assert emulator.session(session.remote_id)["vm_lifetime_seconds"] == 300


# -- ping ---------------------------------------------------------------------------


async def test_ping_lazy_session_is_alive(provider: SandboxProvider) -> None:
    """
    A session with no VM yet is alive, with no deadline yet.
    """
    session = await make(provider)

    health = await provider.ping(session)
    assert health.status is HealthStatus.ALIVE
    assert health.raw_state == "created"
    assert health.expires_at is None
    assert health.data == {"vm_id": None, "vm_assigned": False}


async def test_ping_reads_deadline_from_expires_in_seconds(
    provider: SandboxProvider, clock: ManualClock
) -> None:
    """
    Once the VM runs, the deadline is now + ``expires_in_seconds``.
    """
    session = await make(provider, lifetime=60)
    await clock.advance(30)
    await provider.execute(session, "x = 1")
    await clock.advance(10)

    health = await provider.ping(session)
    assert health.status is HealthStatus.ALIVE
    assert health.raw_state == "active"
    assert health.expires_at == at(clock, 50)
    assert health.data["vm_id"] is not None


async def test_ping_after_lifetime_is_expired(
    provider: SandboxProvider, clock: ManualClock
) -> None:
    """
    A VM that reached its lifetime reads EXPIRED.
    """
    session = await make(provider, lifetime=20, env={})
    await clock.advance(20)

    health = await provider.ping(session)
    assert health.status is HealthStatus.EXPIRED
    assert health.raw_state == "expired"


async def test_ping_after_out_of_band_kill_is_gone(
    provider: SandboxProvider, emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    A VM killed before its lifetime reads GONE.
    """
    session = await make(provider, lifetime=60, env={})
    await clock.advance(5)
    assert session.remote_id is not None
    emulator.kill(session.remote_id)

    health = await provider.ping(session)
    assert health.status is HealthStatus.GONE
    assert health.raw_state == "killed"


async def test_ping_unknown_session_is_gone(provider: SandboxProvider) -> None:
    """
    ``exists: false`` reads GONE.
    """
    session = await make(provider)
    ghost = attrs.evolve(session, remote_id="00000000-0000-0000-0000-000000000009")

    health = await provider.ping(ghost)
    assert health.status is HealthStatus.GONE


async def test_ping_surfaces_vm_replacement(
    provider: SandboxProvider, emulator: SandboxEmulator
) -> None:
    """
    A new ``vm_id`` is reported in detail, data and a log event, never silently.
    """
    session = await make(provider, env={})
    session = merged(session, await provider.ping(session))
    old = session.data["vm_id"]
    assert session.remote_id is not None
    new = emulator.replace_vm(session.remote_id)

    with structlog.testing.capture_logs() as logs:
        health = await provider.ping(session)

    assert health.status is HealthStatus.ALIVE
    assert health.data["vm_replaced"] is True
    assert (health.data["previous_vm_id"], health.data["vm_id"]) == (old, new)
    assert health.data["vm_replacements"] == 1
    assert "state" in (health.detail or "")
    [event] = [e for e in logs if e["event"] == "tether.sandbox.vm_replaced"]
    assert (event["previous_vm_id"], event["vm_id"]) == (old, new)
    quiet = await provider.ping(merged(session, health))
    assert "vm_replaced" not in quiet.data or quiet.detail is None


async def test_first_vm_is_not_a_replacement(provider: SandboxProvider) -> None:
    """
    The lazy VM appearing is not a replacement.
    """
    session = await make(provider)
    session = merged(session, await provider.ping(session))
    await provider.execute(session, "x = 1")

    health = await provider.ping(session)
    assert health.data["vm_id"] is not None
    assert "vm_replaced" not in health.data


# -- close, get, list, find -------------------------------------------------------------


async def test_close_kills_and_is_idempotent(
    provider: SandboxProvider, emulator: SandboxEmulator
) -> None:
    """
    ``/kill`` ends the VM; closing again (404) is success.
    """
    session = await make(provider, env={})
    await provider.close(session)
    await provider.close(session)

    assert session.remote_id not in emulator.live_sessions()
    health = await provider.ping(session)
    assert health.status is HealthStatus.GONE


async def test_close_lazy_and_expired_sessions(
    provider: SandboxProvider, clock: ManualClock
) -> None:
    """
    No VM assigned (404) and an already-dead VM both close quietly.
    """
    lazy = await make(provider)
    dead = await make(provider, "t-2", lifetime=20, env={})
    await clock.advance(30)

    await provider.close(lazy)
    await provider.close(dead)
    await provider.close(attrs.evolve(lazy, remote_id=None))

    assert (await provider.ping(lazy)).status is HealthStatus.GONE


async def test_get_reports_state_and_none_when_unknown(
    provider: SandboxProvider, clock: ManualClock
) -> None:
    """
    ``get`` maps the status: live ACTIVE, killed CLOSED, dead EXPIRED, unknown None.
    """
    live = await make(provider, lifetime=60, env={})
    killed = await make(provider, "t-2", env={})
    await provider.close(killed)
    dead = await make(provider, "t-3", lifetime=20, env={})
    await clock.advance(25)

    got_live = await provider.get(live)
    got_killed = await provider.get(killed)
    got_dead = await provider.get(dead)
    ghost = attrs.evolve(live, remote_id="00000000-0000-0000-0000-000000000009")

    assert got_live is not None
    assert got_live.state is SessionState.ACTIVE
    assert got_live.expires_at == at(clock, 35)
    assert got_killed is not None
    assert got_killed.state is SessionState.CLOSED
    assert got_dead is not None
    assert got_dead.state is SessionState.EXPIRED
    assert await provider.get(ghost) is None


async def test_list_and_find_use_the_metadata_tag(
    provider: SandboxProvider, server: ASGIServer
) -> None:
    """
    ``list`` returns every session with its tether id (None when untagged);
    ``find`` locates one by tether's id with a metadata query.
    """
    mine = await make(provider, "tether-1")
    async with httpx.AsyncClient(base_url=server.url) as raw:
        foreign = (
            await raw.post("/v1/sessions/session", json={"api_key": KEY})
        ).json()["session_id"]

    listed = {r.id: r for r in await provider.list()}
    found = await provider.find("tether-1")
    missing = await provider.find("nope")

    assert listed[str(mine.remote_id)].tether_id == "tether-1"
    assert listed[foreign].tether_id is None
    assert listed[foreign].state is SessionState.ACTIVE
    assert found is not None
    assert found.id == mine.remote_id
    assert missing is None
    query = server.requests[-1].query
    assert "metadata=" in query
    assert "tether_id" in httpx.QueryParams(query)["metadata"]


async def test_list_maps_ended_sessions(
    provider: SandboxProvider, clock: ManualClock
) -> None:
    """
    Killed sessions list as CLOSED, dead VMs as EXPIRED.
    """
    killed = await make(provider, "a", env={})
    await provider.close(killed)
    dead = await make(provider, "b", lifetime=20, env={})
    await clock.advance(21)

    states = {r.tether_id: r.state for r in await provider.list()}
    assert dead.remote_id
    assert states == {"a": SessionState.CLOSED, "b": SessionState.EXPIRED}


# -- execute ------------------------------------------------------------------------------


async def test_execute_runs_code_and_commands(provider: SandboxProvider) -> None:
    """
    Code and commands run in the session's VM; env is visible there.
    """
    session = await make(provider, env={"WHO": "world"})

    py = await provider.execute(session, "x = 2\nprint(x)")
    sh = await provider.execute(session, command="echo hello $WHO", language="bash")
    err = await provider.execute(session, "raise RuntimeError('no')")

    assert isinstance(py, ExecutionResult)
    assert (py.stdout, py.stderr) == ("2\n", "")
    assert py.execution_time == 0.01
    assert sh.stdout == "hello world\n"
    assert err.stderr.endswith("RuntimeError: no\n")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"exec_timeout": 0}, "exec_timeout"),
        ({"exec_timeout": 601}, "exec_timeout"),
        ({"command": "ls"}, "code"),
        ({"code": None}, "code"),
        ({"code": "  "}, "code"),
        ({"language": ""}, "language"),
        ({"vault_ids": "v1"}, "vault_ids"),
        ({"vault_ids": [""]}, "vault_ids"),
    ],
)
async def test_execute_validates_locally(
    provider: SandboxProvider,
    server: ASGIServer,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    """
    Bad execute arguments raise before anything is sent.
    """
    session = await make(provider)
    sent = server.request_count
    args = {"code": "print(1)", **kwargs}

    with pytest.raises(InvalidParameterError) as info:
        await provider.execute(session, **args)

    assert info.value.field == field
    assert server.request_count == sent


@pytest.mark.parametrize(
    ("state", "error"),
    [
        (SessionState.CLOSED, SessionClosedError),
        (SessionState.EXPIRED, SessionExpiredError),
    ],
)
async def test_execute_refuses_ended_sessions(
    provider: SandboxProvider,
    server: ASGIServer,
    state: SessionState,
    error: type[Exception],
) -> None:
    """
    An ended session refuses work with a typed error, sending nothing.
    """
    session = attrs.evolve(await make(provider), state=state)
    sent = server.request_count

    with pytest.raises(error):
        await provider.execute(session, "print(1)")
    with pytest.raises(error):
        await provider.execute_async(session, "print(1)")
    assert server.request_count == sent


async def test_execute_raises_http_timeout_to_cover_exec_timeout(
    provider: SandboxProvider,
) -> None:
    """
    The HTTP timeout grows with the execution's own timeout (not the lifetime).
    """
    assert provider._http_timeout(600).read == 615
    assert provider._http_timeout(1).read == 16


async def test_execute_async_with_polling(provider: SandboxProvider) -> None:
    """
    ``execute_async`` returns a task id; ``execution`` polls; ``wait_execution``
    returns the output.
    """
    session = await make(provider)
    task_id = await provider.execute_async(session, "print('async')")

    first = await provider.execution(task_id)
    result = await provider.wait_execution(task_id, poll_interval=0.01)

    assert (first.is_complete, first.result) == (False, None)
    assert result.stdout == "async\n"


async def test_execution_errors(provider: SandboxProvider) -> None:
    """
    Unknown tasks are RemoteNotFound (404); bad ids and intervals fail locally.
    """
    from tether.exceptions import RemoteNotFoundError  # noqa: PLC0415

    with pytest.raises(RemoteNotFoundError):
        await provider.execution("missing")
    with pytest.raises(InvalidParameterError):
        await provider.execution("a/b")
    with pytest.raises(InvalidParameterError):
        await provider.wait_execution("x", poll_interval=0)


# -- errors -------------------------------------------------------------------------------


async def test_wrong_key_is_auth_error_without_the_key(server: ASGIServer) -> None:
    """
    401 becomes AuthError; neither message, repr nor body show the key.
    """
    wrong = "instavm_sk_wrong_zzzzzzzzzzzz"
    config = SandboxConfig(base_url=server.url, api_key=wrong)
    options = SandboxProvider.client_options(config)
    async with httpx.AsyncClient(
        base_url=options.base_url, headers=dict(options.headers)
    ) as client:
        provider = SandboxProvider(config, client=client, name="sandbox")
        with pytest.raises(AuthError) as info:
            await provider.create(CreateRequest(tether_id="t"))

    error = info.value
    assert error.status_code == 401
    assert "Invalid API key" in str(error)
    for text in (str(error), repr(error), json.dumps(error.body), repr(provider)):
        assert wrong not in text


async def test_service_422_is_request_rejected_and_redacted(
    provider: SandboxProvider,
) -> None:
    """
    A 422 from the service (here: a value the local check would have caught)
    is RequestRejectedError with the field in the message and the type as code.
    """
    with pytest.raises(RequestRejectedError) as info:
        await provider.create(CreateRequest(tether_id="t", params={"vcpu_count": 3}))

    assert info.value.code == "literal_error"
    assert "vcpu_count" in str(info.value)
    assert KEY not in json.dumps(info.value.body)


async def test_tier_limit_is_conflict(clock: ManualClock) -> None:
    """
    403 "Session limit reached" is a ConflictError, not an auth failure.
    """
    emulator = SandboxEmulator(clock=clock.time, api_keys=(KEY,), max_sessions=1)
    async with serve_asgi(emulator.app) as server:
        config = SandboxConfig(base_url=server.url, api_key=KEY)
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-API-Key": KEY}
        ) as client:
            provider = SandboxProvider(config, client=client, name="sandbox")
            await provider.create(CreateRequest(tether_id="a"))
            with pytest.raises(ConflictError) as info:
                await provider.create(CreateRequest(tether_id="b"))

    assert info.value.status_code == 403
    assert info.value.code == "tier_limit"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.SERVER_ERROR, ProviderUnavailableError),
        (Fault.RATE_LIMIT, RateLimitedError),
        (Fault.DROP, OutcomeUnknownError),
        (Fault.MALFORMED, ProviderUnavailableError),
    ],
)
async def test_faults_on_ping_are_classified(
    provider: SandboxProvider,
    emulator: SandboxEmulator,
    fault: Fault,
    error: type[Exception],
) -> None:
    """
    Injected 503, 429, dropped connections and bad JSON map onto transient errors.
    """
    session = await make(provider)
    emulator.faults.kinds = {fault}
    emulator.faults.rate = 1.0

    with pytest.raises(error) as info:
        await provider.ping(session)

    assert getattr(info.value, "retryable", False) is True


@pytest.mark.parametrize("fault", [Fault.DROP_AFTER, Fault.MALFORMED])
async def test_create_with_unknown_outcome_can_be_found(
    provider: SandboxProvider, emulator: SandboxEmulator, fault: Fault
) -> None:
    """
    A create answered by a dropped connection or an unreadable 2xx is
    OutcomeUnknownError, and ``find`` tells whether it happened.
    """
    emulator.faults.kinds = {fault}
    emulator.faults.rate = 1.0
    with pytest.raises(OutcomeUnknownError):
        await provider.create(CreateRequest(tether_id="maybe"))
    emulator.faults.rate = 0.0

    found = await provider.find("maybe")
    if fault is Fault.DROP_AFTER:
        assert found is not None
        assert found.tether_id == "maybe"
    else:
        # The injected malformed answer never reached the emulator's state.
        assert found is None


async def test_unreachable_service_is_unavailable() -> None:
    """
    A refused connection is ProviderUnavailableError (nothing was sent).
    """
    config = SandboxConfig(base_url="http://127.0.0.1:9", api_key=KEY, timeout=2)
    async with httpx.AsyncClient(base_url=config.base_url, timeout=2) as client:
        provider = SandboxProvider(config, client=client, name="sandbox")
        with pytest.raises(ProviderUnavailableError) as info:
            await provider.create(CreateRequest(tether_id="t"))

    assert not isinstance(info.value, OutcomeUnknownError)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (504, {"detail": "Gateway Timeout"}, OutcomeUnknownError),
        (502, "<html>bad gateway</html>", OutcomeUnknownError),
        (403, {"detail": "Permission denied"}, AuthError),
        (429, {"detail": "Rate limit exceeded"}, RateLimitedError),
        (500, {"detail": "oops"}, ProviderUnavailableError),
    ],
)
async def test_status_mapping(status: int, body: Any, error: type[Exception]) -> None:
    """
    Gateway timeouts may have happened (OutcomeUnknown); 403 without a limit
    is auth; 429 and 5xx are transient.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    config = SandboxConfig(base_url="http://sandbox.test", api_key=KEY)
    async with httpx.AsyncClient(
        base_url=config.base_url, transport=httpx.MockTransport(handler)
    ) as client:
        provider = SandboxProvider(config, client=client, name="sandbox")
        with pytest.raises(error) as info:
            await provider.create(CreateRequest(tether_id="t"))

    assert info.value.status_code == status  # type: ignore[attr-defined]


async def test_execute_passes_vault_ids(
    provider: SandboxProvider, server: ASGIServer
) -> None:
    """
    ``vault_ids`` reach the service so secrets need not live in ``env``.
    """
    session = await make(provider)

    result = await provider.execute(session, "print(1)", vault_ids=["v-1"])

    assert result.stdout == "1\n"


async def test_echoed_key_in_422_input_is_masked() -> None:
    """
    FastAPI may echo the request in ``input``; the key in it is redacted.
    """
    echoed = {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["body", "memory_mb"],
                "msg": "Input should be a valid integer",
                "input": {"api_key": KEY, "memory_mb": "x"},
            }
        ]
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json=echoed)

    config = SandboxConfig(base_url="http://sandbox.test", api_key=KEY)
    async with httpx.AsyncClient(
        base_url=config.base_url, transport=httpx.MockTransport(handler)
    ) as client:
        provider = SandboxProvider(config, client=client, name="sandbox")
        with pytest.raises(RequestRejectedError) as info:
            await provider.create(CreateRequest(tether_id="t"))

    assert info.value.code == "int_parsing"
    assert "memory_mb" in str(info.value)
    assert KEY not in json.dumps(info.value.body)
    assert KEY not in str(info.value) + repr(info.value)


def test_session_values_hold_no_secret() -> None:
    """
    Params and data the provider produces never include the key.
    """
    remote = RemoteSession(id="x", data={"vm_id": None, "vm_lifetime_seconds": 60})
    session = as_session(remote, lifetime=60.0)

    assert KEY not in repr(session)
    assert KEY not in json.dumps(session.to_dict())
    assert timedelta(seconds=60).total_seconds() == session.lifetime


async def test_execute_sends_command_with_language_as_the_sdk_does(
    config: SandboxConfig,
) -> None:
    """
    Python code goes out as ``command`` with ``language``, never ``code``.
    """
    sent: list[dict[str, Any]] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path in ("/execute", "/execute_async"):
            sent.append(json.loads(request.content))

    options = SandboxProvider.client_options(config)
    async with httpx.AsyncClient(
        base_url=options.base_url,
        headers=dict(options.headers),
        timeout=options.timeout,
        event_hooks={"request": [record]},
    ) as client:
        provider = SandboxProvider(config, client=client, name="sandbox")
        session = await make(provider)
        result = await provider.execute(session, "x = 42\nprint(x)")

    assert result.stdout == "42\n"
    assert [(b.get("command"), b.get("language"), "code" in b) for b in sent] == [
        ("x = 42\nprint(x)", "python", False)
    ]
