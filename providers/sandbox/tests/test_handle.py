"""
Sandbox sessions through their handle: ``manager.session(SandboxProvider)``,
against the emulator on a real socket.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import tether
from tether.testing import ASGIServer, LoseAnswer, ManualClock, serve_asgi
from tether_sandbox import Execution, ExecutionResult, SandboxHandle, SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"


class Flaky:
    """
    Counts requests by path; the first ``fail`` POSTs to /execute answer 503
    without reaching the emulator.
    """

    def __init__(self, app: Any, fail: int = 0) -> None:
        self.app, self.fail, self.seen = app, fail, Counter[str]()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen[scope["path"]] += 1
            if scope["path"] == "/execute" and self.fail > 0:
                self.fail -= 1
                await send(
                    {"type": "http.response.start", "status": 503, "headers": []}
                )
                await send({"type": "http.response.body", "body": b"{}"})
                return
        await self.app(scope, receive, send)


@pytest.fixture(name="flaky")
def _flaky(emulator: SandboxEmulator) -> Flaky:
    return Flaky(emulator.app)


@pytest.fixture(name="flaky_server")
async def _flaky_server(flaky: Flaky) -> AsyncIterator[ASGIServer]:
    async with serve_asgi(flaky) as server:
        yield server


@pytest.fixture(name="manager")
async def _manager(
    flaky_server: ASGIServer, clock: ManualClock
) -> AsyncIterator[tether.SessionManager]:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with tether.SessionManager(
        registry=registry,
        config={
            "sandbox": {"base_url": flaky_server.url, "api_key": KEY, "timeout": 5}
        },
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        clock=clock,
        health_checks=False,
        environ={},
    ) as manager:
        yield manager


async def test_a_handle_executes_and_is_refused_after_its_block(
    manager: tether.SessionManager, emulator: SandboxEmulator, flaky: Flaky
) -> None:
    """
    The block gets a SandboxHandle whose ``execute`` returns an
    ExecutionResult; state carries across executions; after the block the
    handle says CLOSED and refuses before any request is sent.
    """
    async with manager.session(SandboxProvider, vcpu_count=2) as sb:
        assert isinstance(sb, SandboxHandle)
        await sb.execute("x = 42")
        out = await sb.execute("print(x)")
        assert isinstance(out, ExecutionResult)
        assert "42" in out.stdout
        assert tether.SessionState.ACTIVE == sb.state
        assert sb.remote_id in emulator.live_sessions()

    sent = sum(flaky.seen.values())
    with pytest.raises(tether.SessionEndedError):
        await sb.execute("print(1)")
    assert sent == sum(flaky.seen.values())
    assert tether.SessionState.CLOSED == sb.state
    assert sb.remote_id not in emulator.live_sessions()


async def test_a_refused_execute_is_retried_with_a_span_and_events(
    manager: tether.SessionManager, flaky: Flaky
) -> None:
    """
    A 503 (the service did not act) on ``execute`` is retried; each operation
    emits an ``operation`` event naming it and its outcome.
    """
    async with (
        manager.session(SandboxProvider) as sb,
        manager.events() as events,
    ):
        flaky.fail = 1
        out = await sb.execute("print('ok')")
        event = events.receive_nowait()

    assert "ok" in out.stdout
    assert 2 == flaky.seen["/execute"]
    assert (tether.EventKind.OPERATION, "ok", "execute") == (
        event.kind,
        event.detail,
        event.data["operation"],
    )


async def test_a_handle_is_accepted_wherever_a_session_is(
    manager: tether.SessionManager,
) -> None:
    """
    ping, renew (not supported here: a typed refusal), scope and close take a
    handle as they take a Session or an id.
    """
    async with manager.session(SandboxProvider) as sb:
        health = await manager.ping(sb)
        assert health.ok
        with pytest.raises(tether.NotSupportedError):
            await manager.renew(sb, lifetime=600)
        async with manager.scope(sb):
            pass
        closed = await manager.close(sb)

    assert tether.SessionState.CLOSED == closed.state == sb.state


async def test_connect_takes_over_a_session_tether_did_not_create(
    manager: tether.SessionManager, emulator: SandboxEmulator, http: Any
) -> None:
    """
    ``connect`` checks the service has the session, then records and watches
    it: the handle works, and the manager's exit closes it. An id the service
    does not have is refused.
    """
    made = await http.post(
        "/v1/sessions/session", json={"api_key": KEY, "vm_lifetime_seconds": 600}
    )
    remote_id = made.json()["session_id"]

    sb = await manager.connect(SandboxProvider, remote_id, labels={"by": "hand"})
    out = await sb.execute("print('hi')")
    with pytest.raises(tether.RemoteNotFoundError):
        await manager.connect("sandbox", "00000000-0000-4000-8000-000000000000")

    assert "hi" in out.stdout
    assert (remote_id, {"by": "hand"}) == (sb.remote_id, dict(sb.labels))
    assert remote_id in emulator.live_sessions()
    await manager.close(sb)
    assert remote_id not in emulator.live_sessions()


class Recording:
    """
    Keeps the JSON bodies sent to /execute, then passes them on.
    """

    def __init__(self, app: Any) -> None:
        self.app, self.bodies = app, list[dict[str, Any]]()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/execute":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        self.bodies.append(json.loads(raw))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


async def test_code_is_sent_as_the_sdk_sends_it(
    emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    Python code goes to ``/execute`` as ``command`` with ``language``, as
    InstaVM's own SDK sends it (not as ``code``).
    """
    recording = Recording(emulator.app)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with (
        serve_asgi(recording) as server,
        tether.SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": KEY}},
            clock=clock,
            health_checks=False,
            environ={},
        ) as manager,
        manager.session(SandboxProvider) as sb,
    ):
        out = await sb.execute("print('sdk')")

    [body] = recording.bodies
    assert ("print('sdk')", "python") == (body["command"], body["language"])
    assert "code" not in body
    assert "sdk" in out.stdout


async def test_search_lets_the_service_filter_by_labels_and_metadata(
    manager: tether.SessionManager, emulator: SandboxEmulator, flaky: Flaky
) -> None:
    """
    ``manager.search`` sends one ``GET /v1/sessions/sandboxes?metadata=``: the
    service matches labels (stored at create) and metadata by containment;
    the sessions come back with their labels. Bad metadata is refused
    before anything is sent.
    """
    ml = await manager.create(
        "sandbox", labels={"team": "ml"}, metadata={"tier": "gold"}
    )
    await manager.create("sandbox", labels={"team": "web"}, metadata={"tier": "gold"})
    before = flaky.seen["/v1/sessions/sandboxes"]

    by_labels = await manager.search(SandboxProvider, labels={"team": "ml"})
    gold = await manager.search("sandbox", metadata={"tier": "gold"})
    both = await manager.search(
        "sandbox", labels={"team": "web"}, metadata={"tier": "silver"}
    )
    with pytest.raises(tether.InvalidParameterError):
        await manager.search("sandbox", metadata=["not", "a", "mapping"])

    assert [ml.remote_id] == [r.id for r in by_labels]
    assert {"team": "ml"} == dict(by_labels[0].labels)
    assert ml.id == by_labels[0].tether_id
    assert 2 == len(gold)
    assert [] == both
    assert before + 3 == flaky.seen["/v1/sessions/sandboxes"]


async def test_update_through_a_handle_is_refused_before_anything_is_sent(
    manager: tether.SessionManager, flaky: Flaky
) -> None:
    """
    The sandbox can change nothing after create: ``manager.update`` on a
    handle raises NotSupportedError without a request, and the session
    stays as it was.
    """
    async with manager.session(SandboxProvider, metadata={"tier": "gold"}) as sb:
        sent = sum(flaky.seen.values())
        with pytest.raises(tether.NotSupportedError):
            await manager.update(sb, metadata={"tier": "silver"})
        assert sent == sum(flaky.seen.values())
        assert tether.SessionState.ACTIVE == sb.state
        assert "ok" in (await sb.execute("print('ok')")).stdout


def _operations(events: Any) -> list[tuple[str, str]]:
    seen = []
    while True:
        try:
            event = events.receive_nowait()
        except anyio.WouldBlock:
            return seen
        if event.kind is tether.EventKind.OPERATION:
            seen.append((event.data["operation"], event.detail))


async def test_an_execution_is_started_polled_and_waited_through_a_handle(
    flaky_server: ASGIServer, clock: ManualClock, emulator: SandboxEmulator
) -> None:
    """
    ``execute_async`` returns a task id; ``execution`` polls it (not done on
    the first poll here) and ``wait`` polls until the output is there; the
    task ran in the session's VM (its variables are the session's). Each is
    an operation of its own, evented; after the block all three refuse
    before anything is sent.
    """
    emulator.async_polls = 2
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with (
        tether.SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": flaky_server.url, "api_key": KEY}},
            clock=clock,
            health_checks=False,
            environ={},
        ) as manager,
        manager.events() as events,
    ):
        async with manager.session(SandboxProvider) as sb:
            await sb.execute("x = 7")
            task_id = await sb.execute_async("print(x)")
            first = await sb.execution(task_id)
            out = await sb.wait(task_id, poll_interval=0.01)
        operations = _operations(events)
        sent = len(flaky_server.requests)
        with pytest.raises(tether.SessionEndedError):
            await sb.execute_async("print(1)")
        with pytest.raises(tether.SessionEndedError):
            await sb.execution(task_id)
        with pytest.raises(tether.SessionEndedError):
            await sb.wait(task_id)
        assert sent == len(flaky_server.requests)

    assert isinstance(first, Execution)
    assert (task_id, False, None) == (first.task_id, first.is_complete, first.result)
    assert isinstance(out, ExecutionResult)
    assert "7" in out.stdout
    assert [
        ("execute", "ok"),
        ("execute_async", "ok"),
        ("execution", "ok"),
        ("wait", "ok"),
    ] == operations


@pytest.mark.parametrize("how", ["502", "reset"])
async def test_a_lost_execute_answer_is_not_sent_again(
    emulator: SandboxEmulator, clock: ManualClock, how: str
) -> None:
    """
    ``execute`` is not idempotent: when the service ran the code but its
    answer was lost, the handle raises OutcomeUnknownError after exactly one
    request (the retry policy allows three); the service ran it once.
    """
    lose = LoseAnswer(emulator.app, "POST", "/execute", how, times=0)
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("sandbox", SandboxProvider)
    async with (
        serve_asgi(lose) as server,
        tether.SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": KEY, "timeout": 5}},
            retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
            clock=clock,
            health_checks=False,
            environ={},
        ) as manager,
        manager.session(SandboxProvider) as sb,
    ):
        await sb.execute("print('first')")
        before = [r for r in server.requests if r.path == "/execute"]
        lose.times = 1  # the next /execute runs, and its answer is lost
        with pytest.raises(tether.OutcomeUnknownError):
            await sb.execute("print('once')")
        executes = [r for r in server.requests if r.path == "/execute"]
        usage = await sb.usage()

    assert 1 == lose.lost
    assert 1 == len(executes) - len(before)  # one request, not re-sent
    assert 2 == usage.raw["executions"]  # the service ran it, once


async def test_the_vm_deadline_is_learned_by_a_ping_not_by_execute(
    manager: tether.SessionManager, emulator: SandboxEmulator
) -> None:
    """
    The VM (and its lifetime) starts at the first execute, whose answer
    carries no deadline: ``expires_at`` stays None until a ping reads
    ``expires_in_seconds`` from the status, then it is the VM's deadline.
    """
    async with manager.session(SandboxProvider, vm_lifetime_seconds=600) as sb:
        assert sb.expires_at is None  # no VM yet
        await sb.execute("print(1)")
        after_execute = sb.expires_at
        await manager.ping(sb)
        after_ping = sb.expires_at

    assert after_execute is None
    assert after_ping is not None
