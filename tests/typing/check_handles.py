"""
Checked by mypy --strict (``nox -s mypy``), never run: the handle API is typed
without casts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, assert_type

import anyio

import tether
from tether.abc import CodeExecutor, ExecutingHandle, Provider, RemoteSession
from tether_local import LocalHandle, LocalProvider
from tether_morpheus import (
    ChatCompletion,
    ChatStream,
    MorpheusHandle,
    MorpheusProvider,
    SyncMorpheusHandle,
    ToolCall,
)
from tether_sandbox import (
    AppURL,
    EgressPolicy,
    Execution,
    ExecutionResult,
    SandboxHandle,
    SandboxProvider,
    SessionUsage,
)


async def handles(manager: tether.SessionManager) -> None:
    async with manager.session(SandboxProvider, vcpu_count=2) as sb:
        assert_type(sb, SandboxHandle)
        out = await sb.execute("print(1)")
        assert_type(out, ExecutionResult)
        assert_type(await sb.execute_async("print(2)"), str)
        assert_type(await sb.execution("task"), Execution)
        assert_type(await sb.wait("task"), ExecutionResult)
        assert_type(await manager.update(sb, metadata={}), tether.Session)
        assert_type(await sb.usage(), SessionUsage)
        assert_type(await sb.download("out.txt"), bytes)
        assert_type(await sb.app_url(8080), AppURL)
        assert_type(await sb.egress(), EgressPolicy)
        assert_type(sb.id, str)
        assert_type(sb.state, tether.SessionState)
        assert_type(sb.expires_at, datetime | None)
        assert_type(sb.provider, SandboxProvider)
        assert_type(await manager.ping(sb), tether.Health)
        assert_type(await manager.renew(sb, lifetime=60), tether.Session)
        async with manager.scope(sb):
            pass
        assert_type(await manager.close(sb), tether.Session)

    async with manager.session("sandbox", vcpu_count=2) as by_name:
        assert_type(by_name, tether.Session)


async def morpheus(manager: tether.SessionManager) -> None:
    async with manager.session(MorpheusProvider, model="m") as m:
        assert_type(m, MorpheusHandle)
        assert_type(await m.chat([{"role": "user", "content": "hi"}]), ChatCompletion)
        assert_type(await m.chat([], stream=True), ChatStream)
        tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        called = await m.chat([], tools=tools, tool_choice="auto")
        assert_type(called, ChatCompletion)
        assert_type(called.tool_calls, tuple[ToolCall, ...])
        assert_type(await m.chat([], stream=True, tools=tools), ChatStream)


async def connected(manager: tether.SessionManager) -> None:
    assert_type(await manager.connect(SandboxProvider, "r-1"), SandboxHandle)
    assert_type(await manager.connect("sandbox", "r-1"), tether.Session)
    assert_type(
        await manager.search(SandboxProvider, labels={"job": "1"}),
        list[RemoteSession],
    )


def sync(manager: tether.SyncSessionManager) -> None:
    from tether_sandbox import SyncSandboxHandle  # noqa: PLC0415

    with manager.session(SandboxProvider, vcpu_count=2) as sb:
        assert_type(sb, SyncSandboxHandle)
        assert_type(sb.execute("print(1)"), ExecutionResult)
        assert_type(sb.download("out.txt"), bytes)
        assert_type(sb.id, str)
        assert_type(sb.execute_async("print(2)"), str)
        assert_type(sb.execution("task"), Execution)
        assert_type(sb.wait("task"), ExecutionResult)
        assert_type(manager.ping(sb), tether.Health)
    with manager.session("sandbox") as by_name:
        assert_type(by_name, tether.Session)
    assert_type(manager.connect(SandboxProvider, "r-1"), SyncSandboxHandle)
    assert_type(manager.connect("sandbox", "r-1"), tether.Session)
    assert_type(
        manager.search(SandboxProvider, labels={"job": "1"}), list[RemoteSession]
    )
    assert_type(manager.search("sandbox", metadata={}), list[RemoteSession])
    assert_type(manager.handle("s-1"), tether.abc.SyncSessionHandle[Any])


def sync_twins(manager: tether.SyncSessionManager) -> None:
    import httpx  # noqa: PLC0415

    from tether_relay import (  # noqa: PLC0415
        RelayCredentials,
        RelayProvider,
        RelayUser,
        SyncRelayHandle,
    )
    from tether_sipher import SipherProvider, SyncSipherHandle  # noqa: PLC0415

    with manager.session(MorpheusProvider, model="m") as m:
        assert_type(m, SyncMorpheusHandle)
        assert_type(m.chat([{"role": "user", "content": "hi"}]), ChatCompletion)
        assert_type(m.chat([], tools=[], tool_choice="none"), ChatCompletion)
    with manager.session(RelayProvider, users=["1.1.1.1"]) as relay:
        assert_type(relay, SyncRelayHandle)
        assert_type(relay.authorize_user("8.8.8.8"), RelayUser)
        assert_type(relay.revoke_user("8.8.8.8"), bool)
        assert_type(relay.credentials(), RelayCredentials)
        assert_type(manager.update(relay, authorize=["9.9.9.9"]), tether.Session)
    with manager.session(SipherProvider) as sip:
        assert_type(sip, SyncSipherHandle)
        assert_type(sip.request("GET", "/v1/x"), httpx.Response)
        with sip.client() as client:
            assert_type(client, httpx.Client)


async def relay_and_sipher(manager: tether.SessionManager) -> None:
    import httpx  # noqa: PLC0415

    from tether_relay import (  # noqa: PLC0415
        RelayCredentials,
        RelayHandle,
        RelayProvider,
        RelayUser,
    )
    from tether_sipher import SipherHandle, SipherProvider  # noqa: PLC0415

    async with manager.session(RelayProvider, users=["1.1.1.1"]) as relay:
        assert_type(relay, RelayHandle)
        assert_type(await relay.authorize_user("8.8.8.8"), RelayUser)
        assert_type(await relay.revoke_user("8.8.8.8"), bool)
        assert_type(await relay.credentials(), RelayCredentials)
        assert_type(await manager.update(relay, authorize=["9.9.9.9"]), tether.Session)
    async with manager.session(SipherProvider) as sip:
        assert_type(sip, SipherHandle)
        assert_type(await sip.request("GET", "/v1/x"), httpx.Response)
        async with sip.client(verify="always") as client:
            assert_type(client, httpx.AsyncClient)


async def code_execution(
    manager: tether.SessionManager,
    local_provider: LocalProvider,
    sandbox_provider: SandboxProvider,
    sandbox: SandboxHandle,
) -> None:
    # One code-execution operation: both providers and their handles are
    # tether.abc's CodeExecutor and ExecutingHandle, with one result type.
    executors: list[CodeExecutor] = [local_provider, sandbox_provider]
    session = await manager.get("s-1")
    assert_type(await executors[0].execute(session, "1"), ExecutionResult)
    async with manager.session(LocalProvider) as local:
        assert_type(local, LocalHandle)
        handles: list[ExecutingHandle] = [local, sandbox]
        assert_type(await handles[0].execute("print(1)"), ExecutionResult)
        assert_type(await local.execute(command="ls"), ExecutionResult)


async def provider_by_class(manager: tether.SessionManager) -> None:
    """
    A provider asked for by its class is typed as that class; the manager's
    operations are coroutines, as a task group's ``start_soon`` wants.
    """
    assert_type(manager.provider(SandboxProvider), SandboxProvider)
    assert_type(manager.provider("sandbox"), Provider[Any])
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.create, "sandbox")


def sync_provider_by_class(manager: tether.SyncSessionManager) -> None:
    assert_type(manager.provider(SandboxProvider), SandboxProvider)
    assert_type(manager.renew("an id"), tether.Session)
