"""
Chaos through a real TCP proxy, against emulators running as their own processes.

Unlike tests/test_chaos.py (faults injected inside the emulator, in-process),
here a proxy (tests/_proxy.py) sits on a real socket between tether's client and
an emulator process (tests/_emulator_process.py), and per request forwards, drops
the answer after forwarding, answers 502/504 after forwarding, resets before
forwarding, truncates list answers, or delays. The verdict comes from the
emulator's ground truth, read through the service's own HTTP API straight from
the emulator (never through the proxy, never from tether's records): after the
manager exits and a fresh manager reconciles, nothing may be live there.

``TETHER_SOAK_LIFECYCLES`` (see ``nox -s soak``) sets the lifecycles per test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

import tether
from tether_relay import RelayProvider
from tether_sandbox import SandboxProvider
from tether_sipher import SipherProvider
from tether_sipher.emulator import PRO_KEY


def _load_helper(name: str) -> Any:
    # --import-mode=importlib puts no test folder on sys.path: load by path.
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name(f"{name}.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_proxy = _load_helper("_proxy")
ChaosProxy = _proxy.ChaosProxy
serve_proxy = _proxy.serve_proxy
Route = _proxy.Route
emulator_process = _load_helper("_emulator_process").emulator_process


S = tether.SessionState
SANDBOX_KEY = "instavm_sk_proxychaos_0123456789"
RELAY_TOKEN = "relay-proxychaos-token-0123456789"
#: Lifecycles per test (per provider, per backend, per seed).
LIFECYCLES = int(os.environ.get("TETHER_SOAK_LIFECYCLES", "20"))
RATE = 0.3
#: A hang guard per phase, never a speed requirement.
PHASE = 60
WORKER = str(Path(__file__).parent / "_worker.py")

#: Counts printed at the end of the test run (see conftest.py).
CHAOS: Counter[str] = Counter()


# -- the services' ground truth, read through their own APIs ---------------------


async def sandbox_truth(
    client: httpx.AsyncClient, url: str, _proxy: Any = None
) -> list[dict[str, Any]]:
    """
    Every sandbox of the key, killed ones included (the emulator keeps them).
    """
    response = await client.get(
        f"{url}/v1/sessions/sandboxes",
        params={"limit": 1000},
        headers={"X-API-Key": SANDBOX_KEY},
    )
    response.raise_for_status()
    rows = response.json()
    assert isinstance(rows, list)
    return rows


def sandbox_live(rows: list[dict[str, Any]]) -> set[str]:
    # "created": no VM yet, usable (and billed) until killed.
    return {r["sandbox_id"] for r in rows if r["status"] in ("created", "active")}


async def relay_truth(
    client: httpx.AsyncClient, url: str, _proxy: Any = None
) -> list[dict[str, Any]]:
    """
    Every relay session that exists, following the list's pagination.
    """
    found: list[dict[str, Any]] = []
    page = 1
    for _ in range(10_000):
        response = await client.get(
            f"{url}/v1/relays/sessions",
            params={"page": page},
            headers={"Authorization": f"token {RELAY_TOKEN}"},
        )
        response.raise_for_status()
        body = response.json()
        found.extend(body["sessions"])
        if not body["pagination"]["has_next"]:
            break
        page = body["pagination"]["next_page_number"]
    return found


def relay_live(rows: list[dict[str, Any]]) -> set[str]:
    return {r["session_id"] for r in rows}


async def sipher_truth(
    client: httpx.AsyncClient, url: str, proxy: Any
) -> list[dict[str, Any]]:
    """
    Sipher can neither list nor find: the sessions it made are those whose
    create answers the proxy saw on the wire (delivered or not); each is asked
    for with ``GET /v1/sessions/{id}`` straight from the emulator.
    """
    found = []
    for fault, answer in proxy.creates:
        session_id = json.loads(answer)["data"]["sessionId"]
        response = await client.get(
            f"{url}/v1/sessions/{session_id}", headers={"X-API-Key": PRO_KEY}
        )
        assert response.status_code in (200, 404), response.text
        found.append(
            {"id": session_id, "fault": fault, "live": response.status_code == 200}
        )
    return found


def sipher_live(rows: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in rows if r["live"]}


#: Faults after which the client never saw the service's answer.
ANSWER_LOST = frozenset({"drop_after_forward", "502", "504"})


def sipher_route(method: str, path: str) -> Route | None:
    if path == "/v1/sessions":
        return "create" if method == "POST" else "session"
    if path.startswith("/v1/sessions/"):
        return "session"
    return None


def sandbox_route(method: str, path: str) -> Route | None:
    if method == "POST" and path == "/v1/sessions/session":
        return "create"
    if method == "GET" and path == "/v1/sessions/sandboxes":
        return "list"
    if path.startswith("/v1/sessions/status/") or path == "/kill":
        return "session"
    return None


def relay_route(method: str, path: str) -> Route | None:
    if path == "/v1/relays/sessions":
        return "create" if method == "POST" else "list"
    if path.startswith("/v1/relays/sessions"):
        return "session"
    return None


@attrs.frozen
class Target:
    name: str
    provider: type[Any]
    key: str
    config: Callable[[str], dict[str, Any]]
    params: Callable[[int], dict[str, Any]]
    route: Callable[[str, str], Route | None]
    truth: Callable[[httpx.AsyncClient, str, Any], Any]
    live: Callable[[list[dict[str, Any]]], set[str]]
    #: Whether the provider can tell what exists (list or find); if not, a
    #: create whose answer was lost stays CREATING and its session lives until
    #: its lifetime ends.
    resolvable: bool = True


TARGETS = {
    "sandbox": Target(
        "sandbox",
        SandboxProvider,
        SANDBOX_KEY,
        lambda url: {"base_url": url, "api_key": SANDBOX_KEY, "timeout": 10},
        lambda _i: {"vcpu_count": 2},
        sandbox_route,
        sandbox_truth,
        sandbox_live,
    ),
    "relay": Target(
        "relay",
        RelayProvider,
        RELAY_TOKEN,
        lambda url: {"base_url": url, "api_token": RELAY_TOKEN, "timeout": 10},
        # One user IP per lifecycle: an untagged relay session whose create
        # answer was lost is recognised by its users (see RelayProvider.matches).
        lambda i: {"users": [f"1.1.{i // 250}.{i % 250 + 1}"]},
        relay_route,
        relay_truth,
        relay_live,
    ),
    "sipher": Target(
        "sipher",
        SipherProvider,
        PRO_KEY,
        lambda url: {"base_url": url, "api_key": PRO_KEY, "timeout": 10},
        lambda _i: {"chain": "solana"},
        sipher_route,
        sipher_truth,
        sipher_live,
        resolvable=False,
    ),
}


def manager(target: Target, url: str, store: str, **kw: Any) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register(target.name, target.provider)
    return tether.SessionManager(
        registry=registry,
        store=store,
        config={target.name: target.config(url)},
        retry=tether.RetryPolicy(attempts=4, wait_initial=0, wait_max=0),
        breakers=tether.BreakerPolicy(failure_threshold=1000),
        health_checks=False,
        shield_timeout=30,
        environ={},
        **kw,
    )


@contextlib.contextmanager
def typed(errors: Counter[str], untyped: list[BaseException]) -> Any:
    """
    Count a TetherError by type; keep anything else (the test then fails).
    """
    try:
        yield
    except tether.TetherError as exc:
        errors[type(exc).__name__] += 1
    except Exception as exc:
        untyped.append(exc)


@pytest.mark.parametrize(("seed", "rate"), [(1, RATE), (2, 2 * RATE)])
@pytest.mark.parametrize("name", ["sandbox", "relay", "sipher"])
async def test_lifecycles_through_a_faulty_proxy_leave_nothing_live(
    name: str, seed: int, rate: float, tmp_path: Path, anyio_backend: str
) -> None:
    """
    Lifecycles (create, maybe ping, close) through a proxy that drops answers
    after forwarding, answers 502/504 after forwarding, resets before
    forwarding, truncates lists and delays: every failure is a TetherError;
    after the manager exits and a fresh one reconciles, the emulator holds no
    live session, no record is left CREATING or live, no create was made twice.
    """
    target = TARGETS[name]
    store = f"sqlite:///{tmp_path / 'proxy.db'}"
    rng = random.Random(seed)  # noqa: S311
    errors: Counter[str] = Counter()
    untyped: list[BaseException] = []
    backend_seed = seed * 10 + (anyio_backend == "trio")
    async with (
        emulator_process(name, target.key) as url,
        httpx.AsyncClient(timeout=30) as truth_client,
    ):
        host, port = url.removeprefix("http://").split(":")
        proxy = ChaosProxy(
            upstream=(host, int(port)),
            classify=target.route,
            rate=rate,
            seed=backend_seed,
        )
        async with serve_proxy(proxy):
            with (
                anyio.fail_after(PHASE * max(1, LIFECYCLES // 20)),
                typed(errors, untyped),
            ):
                async with manager(target, proxy.url, store) as chaotic:
                    for i in range(LIFECYCLES):
                        with typed(errors, untyped):
                            session = await chaotic.create(
                                name, lifetime=600, **target.params(i)
                            )
                            if rng.random() < 0.7:
                                await chaotic.ping(session)
                            await chaotic.close(session)
                    # Exiting closes what the manager still tracks.
            faults = +proxy.faults
            created_upstream = proxy.created_upstream

        with anyio.fail_after(PHASE):
            async with manager(target, url, store) as clean:
                await clean.reconcile(grace=0)
                after_reconcile = target.live(
                    await target.truth(truth_client, url, proxy)
                )
                records = await clean.list()
                lost_while_alive = [
                    r
                    for r in records
                    if r.state is S.LOST and r.remote_id in after_reconcile
                ]
                for record in await clean.list(state=[S.ACTIVE, S.DEGRADED, S.CLOSING]):
                    with typed(errors, untyped):
                        await clean.close(record)
                records = await clean.list()
            rows = await target.truth(truth_client, url, proxy)

    leaks = target.live(rows)
    creating = [r for r in records if r.state is S.CREATING]
    unended = [r for r in records if r.state in (S.ACTIVE, S.DEGRADED, S.CLOSING)]
    duplicates = created_upstream - LIFECYCLES
    if name == "sandbox":
        # Every sandbox ever made is listed: count them per tether tag.
        tags = Counter((r.get("metadata") or {}).get("tether_id") for r in rows)
        duplicates = max(duplicates, sum(n - 1 for n in tags.values() if n > 1))

    CHAOS["proxy.lifecycles"] += LIFECYCLES
    for kind, n in faults.items():
        CHAOS[f"proxy.fault.{kind}"] += n
    CHAOS["proxy.failures (typed)"] += sum(errors.values())
    CHAOS["proxy.leaks"] += len(leaks) if target.resolvable else 0
    CHAOS["proxy.creating_left"] += len(creating)
    CHAOS["proxy.lost_records"] += len(unended)
    CHAOS["proxy.lost_while_alive"] += len(lost_while_alive)
    CHAOS["proxy.duplicate_creates"] += max(0, duplicates)
    CHAOS["proxy.untyped_errors"] += len(untyped)

    assert [] == untyped
    assert sum(faults.values()) > 0, "no fault was injected: the test tested nothing"
    assert duplicates <= 0, f"{name}: {duplicates} create(s) made twice"
    if target.resolvable:
        assert set() == leaks, f"{name}: live on the emulator after reconcile: {leaks}"
        assert [] == creating, f"{name}: records left CREATING"
    else:
        # Nothing can resolve a lost create answer: its record stays CREATING
        # (outcome unknown), and the session it may have made lives until its
        # lifetime ends. Only such sessions may be live, at most one each.
        assert created_upstream == len(rows), "the ground truth missed creates"
        unanswered = {r["id"] for r in rows if r["fault"] in ANSWER_LOST}
        assert leaks <= unanswered, f"{name}: a delivered session left live"
        assert len(leaks) <= len(creating), f"{name}: more orphans than unknowns"
        for record in creating:
            assert "outcome unknown" in (record.error or ""), record
        CHAOS["proxy.unresolvable_orphans (end at lifetime)"] += len(leaks)
    assert [] == unended, f"{name}: records left live after closing"
    assert [] == lost_while_alive, f"{name}: marked LOST while alive"


async def test_sigkill_mid_run_then_reconcile_leaves_nothing_live(
    tmp_path: Path, anyio_backend: str
) -> None:
    """
    A worker process creating sandboxes on a SQLite store, through the proxy
    (every create delayed, so one is likely in flight), is killed with SIGKILL;
    a manager in the test process reconciles over a clean route. The emulator's
    ground truth then holds nothing live, and no record was marked LOST while
    its session was alive.
    """
    target = TARGETS["sandbox"]
    store = f"sqlite:///{tmp_path / 'killed.db'}"
    async with (
        emulator_process("sandbox", SANDBOX_KEY) as url,
        httpx.AsyncClient(timeout=30) as truth_client,
    ):
        host, port = url.removeprefix("http://").split(":")
        proxy = ChaosProxy(
            upstream=(host, int(port)),
            classify=target.route,
            rate=1.0,
            seed=7,
            kinds=["delay"],
            delay=0.1,
        )
        async with serve_proxy(proxy):
            args = {
                "store": store,
                "sandbox_url": proxy.url,
                "sandbox_key": SANDBOX_KEY,
                "mode": "churn",
                "backend": anyio_backend,
            }
            async with await anyio.open_process(
                [sys.executable, WORKER, json.dumps(args)]
            ) as process:
                assert process.stdout is not None
                with anyio.fail_after(PHASE):
                    await process.stdout.receive()  # started
                    while proxy.created_upstream < 3:  # noqa: ASYNC110 -- another process's effect
                        await anyio.sleep(0.02)
                    # Kill it in the middle of a create: wait for the next
                    # create to reach the proxy, then kill.
                    seen = proxy.requests["create"]
                    while proxy.requests["create"] == seen:  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
            created_upstream = proxy.created_upstream
        before = sandbox_live(await sandbox_truth(truth_client, url))

        with anyio.fail_after(PHASE):
            async with manager(target, url, store) as clean:
                report = await clean.reconcile(grace=0)
                alive = sandbox_live(await sandbox_truth(truth_client, url))
                records = await clean.list()
                lost_while_alive = [
                    r for r in records if r.state is S.LOST and r.remote_id in alive
                ]
                for record in await clean.list(state=[S.ACTIVE, S.DEGRADED, S.CLOSING]):
                    await clean.close(record)
                leftovers = await clean.list(state=[S.CREATING, S.CLOSING])
        rows = await sandbox_truth(truth_client, url)

    leaks = sandbox_live(rows)
    tags = Counter((r.get("metadata") or {}).get("tether_id") for r in rows)
    CHAOS["proxy.sigkill.runs"] += 1
    CHAOS["proxy.sigkill.created_before_kill"] += created_upstream
    CHAOS["proxy.sigkill.reconcile_actions"] += len(report.actions)
    CHAOS["proxy.leaks"] += len(leaks)
    CHAOS["proxy.lost_while_alive"] += len(lost_while_alive)
    assert created_upstream >= 3
    assert len(before) >= 3, "the worker left nothing live: the test tested nothing"
    assert set() == leaks
    assert [] == leftovers
    assert [] == lost_while_alive
    assert all(n == 1 for n in tags.values()), "a create was made twice"
