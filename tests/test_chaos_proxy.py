"""
Chaos through a real TCP proxy, against emulators running as their own processes.

Unlike tests/test_chaos.py (faults injected inside the emulator, in-process),
here a proxy (tests/_proxy.py) sits on a real socket between tether's client and
an emulator process (tests/_emulator_process.py), and per request forwards, drops
the answer after forwarding, answers 502/504 after forwarding, resets before
forwarding, truncates list answers, delays, answers an error quoting the key
the client sent (``quote_key``), or answers 429 with a ``Retry-After`` longer
than the manager's shield (``retry_after_long``). Further tests fail a Morpheus
create's read-only pre-step (``readonly_prestep``) and cut a Redis store's TCP
connections mid-operation (``store_down``). The verdict comes from the
emulator's ground truth, read through the service's own HTTP API straight from
the emulator (never through the proxy, never from tether's records): after the
manager exits and a fresh manager reconciles, nothing may be live there. The
key may appear in no error caught, no log line and no byte of the store.

``TETHER_SOAK_LIFECYCLES`` (see ``nox -s soak``) sets the lifecycles per test.
``TETHER_PROXY_MIX=all`` adds ``quote_key`` and ``retry_after_long`` to the
lifecycle test's random mix (their own tests always run): a refusal after a
create attempt whose answer was lost then settles the create FAILED, and an
ambiguous match is taken as no session, which leaves relay sessions live.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
import structlog.testing

import tether
from tether_morpheus import MorpheusProvider
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
StoreCut = _proxy.StoreCut
serve_store_cut = _proxy.serve_store_cut
emulator_process = _load_helper("_emulator_process").emulator_process


S = tether.SessionState
SANDBOX_KEY = "instavm_sk_proxychaos_0123456789"
RELAY_TOKEN = "relay-proxychaos-token-0123456789"
MORPHEUS_KEY = "sk-PrXy01.proxychaos0123456789abcdef"
#: Lifecycles per test (per provider, per backend, per seed).
LIFECYCLES = int(os.environ.get("TETHER_SOAK_LIFECYCLES", "20"))
RATE = 0.3
#: A hang guard per phase, never a speed requirement.
PHASE = 60
WORKER = str(Path(__file__).parent / "_worker.py")

#: The lifecycle test's random mix (see the module's docstring).
MIX = (
    _proxy.FAULTS
    if os.environ.get("TETHER_PROXY_MIX") == "all"
    else tuple(k for k in _proxy.FAULTS if k not in ("quote_key", "retry_after_long"))
)

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
        return "close" if method == "DELETE" else "session"
    return None


def sandbox_route(method: str, path: str) -> Route | None:
    if method == "POST" and path == "/v1/sessions/session":
        return "create"
    if method == "GET" and path == "/v1/sessions/sandboxes":
        return "list"
    if path == "/kill":
        return "close"
    if path.startswith("/v1/sessions/status/"):
        return "session"
    return None


def relay_route(method: str, path: str) -> Route | None:
    if path == "/v1/relays/sessions":
        return "create" if method == "POST" else "list"
    if path.startswith("/v1/relays/sessions"):
        return "close" if method == "DELETE" else "session"
    return None


MORPHEUS_API = "/api/v1"


def morpheus_route(method: str, path: str) -> Route | None:
    if method == "GET" and path.startswith(f"{MORPHEUS_API}/models"):
        # The model lists a create reads before it opens: a read-only pre-step.
        return "read"
    if path in (
        f"{MORPHEUS_API}/session/modelsession",
        f"{MORPHEUS_API}/session/bidsession",
    ):
        return "create"
    if path == f"{MORPHEUS_API}/session/closesession":
        return "close"
    if path.startswith(f"{MORPHEUS_API}/session/"):
        return "session"
    return None


async def morpheus_truth(
    client: httpx.AsyncClient, url: str, _proxy: Any = None
) -> list[dict[str, Any]]:
    """
    The key's session, as the gateway's own ``pingsession`` tells (one key
    holds at most one session there).
    """
    response = await client.post(
        f"{url}{MORPHEUS_API}/session/pingsession",
        headers={"Authorization": f"Bearer {MORPHEUS_KEY}"},
    )
    response.raise_for_status()
    body = response.json()
    assert isinstance(body, dict)
    return [body]


def morpheus_live(rows: list[dict[str, Any]]) -> set[str]:
    return {r["session_id"] for r in rows if r.get("status") == "alive"}


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
    "morpheus": Target(
        "morpheus",
        MorpheusProvider,
        MORPHEUS_KEY,
        # v1.14.0's session routes: a create reads the model list (GET
        # /api/v1/models), then opens (POST /session/modelsession).
        lambda url: {
            "base_url": url,
            "api_key": MORPHEUS_KEY,
            "timeout": 10,
            "mode": "sessions",
        },
        lambda _i: {"model": "llama-3.3-70b"},
        morpheus_route,
        morpheus_truth,
        morpheus_live,
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
def typed(
    errors: Counter[str],
    untyped: list[BaseException],
    scan: SecretScan | None = None,
) -> Any:
    """
    Count a TetherError by type; keep anything else (the test then fails).
    Each error caught is handed to *scan*.
    """
    try:
        yield
    except tether.TetherError as exc:
        errors[type(exc).__name__] += 1
        if scan is not None:
            scan.caught(exc)
    except Exception as exc:
        untyped.append(exc)
        if scan is not None:
            scan.caught(exc)


# -- where a key quoted back could leak ---------------------------------------------


@attrs.define
class SecretScan:
    """
    The places a credential could leak to, and a search of them all: every
    error caught (str, repr and attributes, down its cause chain), every log
    line (structlog events and stdlib records, DEBUG up, any logger), and
    every byte of the store's files (an SQLite file with its -wal and -shm).
    """

    secret: str
    texts: list[str] = attrs.field(factory=list)
    logs: list[str] = attrs.field(factory=list)
    store_hits: set[str] = attrs.field(factory=set)

    def caught(self, exc: BaseException) -> None:
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.texts.extend([str(current), repr(current), repr(vars(current))])
            current = current.__cause__ or current.__context__

    @contextlib.contextmanager
    def capturing_logs(self) -> Iterator[None]:
        lines = self.logs

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(self.format(record))
                lines.append(repr(vars(record)))

        handler = Keep(level=logging.DEBUG)
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with structlog.testing.capture_logs() as events:
                yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            lines.append(repr(events))

    def scan_store(self, files: Iterable[Path]) -> None:
        """
        Search the store's files as they are now (call while it is open, and
        after: a -wal file may be gone once checkpointed).
        """
        raw = self.secret.encode()
        self.store_hits.update(
            f"store file {p.name}"
            for p in files
            if p.exists() and raw in p.read_bytes()
        )

    def leaks(self) -> list[str]:
        """
        Where the secret's value was found (nowhere, if all is well).
        """
        found = [f"error {i}" for i, t in enumerate(self.texts) if self.secret in t]
        found += [f"log line {i}" for i, t in enumerate(self.logs) if self.secret in t]
        return found + sorted(self.store_hits)


def sqlite_files(db: Path) -> list[Path]:
    """
    The SQLite store's file and its companions (-wal, -shm, -journal).
    """
    return sorted(db.parent.glob(f"{db.name}*"))


@pytest.mark.parametrize(("seed", "rate"), [(1, RATE), (2, 2 * RATE)])
@pytest.mark.parametrize("name", ["sandbox", "relay", "sipher"])
async def test_lifecycles_through_a_faulty_proxy_leave_nothing_live(
    name: str, seed: int, rate: float, tmp_path: Path, anyio_backend: str
) -> None:
    """
    Lifecycles (create, maybe ping, close) through a proxy that drops answers
    after forwarding, answers 502/504 after forwarding, resets before
    forwarding, truncates lists and delays (see ``MIX``): every failure is a
    TetherError;
    after the manager exits and a fresh one reconciles, the emulator holds no
    live session, no record is left CREATING or live, no create was made twice,
    and the key is in no error, log line or store byte.
    """
    target = TARGETS[name]
    db = tmp_path / "proxy.db"
    store = f"sqlite:///{db}"
    rng = random.Random(seed)  # noqa: S311
    errors: Counter[str] = Counter()
    untyped: list[BaseException] = []
    scan = SecretScan(target.key)
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
            kinds=MIX,
        )
        async with serve_proxy(proxy):
            with (
                anyio.fail_after(PHASE * max(1, LIFECYCLES // 20)),
                typed(errors, untyped, scan),
                scan.capturing_logs(),
            ):
                async with manager(target, proxy.url, store) as chaotic:
                    for i in range(LIFECYCLES):
                        with typed(errors, untyped, scan):
                            session = await chaotic.create(
                                name, lifetime=600, **target.params(i)
                            )
                            if rng.random() < 0.7:
                                await chaotic.ping(session)
                            await chaotic.close(session)
                    # Exiting closes what the manager still tracks.
            faults = +proxy.faults
            created_upstream = proxy.created_upstream

        scan.scan_store(sqlite_files(db))
        with anyio.fail_after(PHASE), scan.capturing_logs():
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
                    with typed(errors, untyped, scan):
                        await clean.close(record)
                records = await clean.list()
                scan.scan_store(sqlite_files(db))
            rows = await target.truth(truth_client, url, proxy)
    scan.scan_store(sqlite_files(db))
    leaked = scan.leaks()

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
    CHAOS["proxy.secret_leaks"] += len(leaked)

    assert [] == untyped
    assert [] == leaked, f"{name}: the key appeared in {leaked}"
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


def proxy_to(url: str, target: Target, **kw: Any) -> Any:
    host, port = url.removeprefix("http://").split(":")
    return ChaosProxy(upstream=(host, int(port)), classify=target.route, **kw)


def fault_only(
    proxy: Any, kind: str, routes: set[str] | None, rate: float = 1.0
) -> None:
    """
    From now on, fault *routes* (``None``: all) with *kind* at *rate*.
    """
    proxy.kinds = [kind]
    proxy.only = {}
    proxy.routes = None if routes is None else frozenset(routes)
    proxy.rate = rate


@pytest.mark.parametrize("name", ["sandbox", "relay"])
async def test_refusals_quoting_the_key_or_retry_after_past_the_shield(
    name: str, tmp_path: Path, anyio_backend: str
) -> None:
    """
    ``retry_after_long``: a 429 with a Retry-After (an hour) longer than the
    manager's shield fails a create (record FAILED, nothing made) and a close
    (RateLimitedError, the record stays CLOSING and the session stays live on
    the emulator) at once, typed, never slept on; a ping under a caller's
    deadline shorter than the wait answers DEGRADED at once, saying why. ``quote_key``: errors that
    quote the key sent (401, 400 or 500) on creates, pings and closes fail
    typed. With the faults lifted, a repeated close and a reconcile end every
    session: nothing is live on the emulator, and the key is in no error, no
    log line, no byte of the SQLite store.
    """
    target = TARGETS[name]
    db = tmp_path / "refusals.db"
    store = f"sqlite:///{db}"
    errors: Counter[str] = Counter()
    untyped: list[BaseException] = []
    scan = SecretScan(target.key)
    n = max(3, LIFECYCLES // 5)
    async with (
        emulator_process(name, target.key) as url,
        httpx.AsyncClient(timeout=30) as truth_client,
    ):
        proxy = proxy_to(url, target, rate=0.0, seed=5 + (anyio_backend == "trio"))
        async with serve_proxy(proxy):
            with (
                anyio.fail_after(PHASE * max(1, LIFECYCLES // 20)),
                scan.capturing_logs(),
            ):
                async with manager(target, proxy.url, store) as m:
                    # A long Retry-After on a create: typed, FAILED, nothing made.
                    fault_only(proxy, "retry_after_long", {"create"})
                    with pytest.raises(tether.RateLimitedError) as refused:
                        await m.create(name, lifetime=600, **target.params(0))
                    scan.caught(refused.value)
                    assert refused.value.retry_after == _proxy.RETRY_AFTER_LONG
                    assert proxy.created_upstream == 0
                    assert [S.FAILED] == [r.state for r in await m.list()]

                    proxy.rate = 0.0
                    sessions = [
                        await m.create(name, lifetime=600, **target.params(i + 1))
                        for i in range(n)
                    ]
                    ids = {s.remote_id for s in sessions}

                    # A ping under a caller's deadline shorter than the wait:
                    # answered at once (DEGRADED, saying why), not slept on.
                    fault_only(proxy, "retry_after_long", {"session"})
                    pinged: list[tether.Health] = []
                    with anyio.move_on_after(PHASE / 2):
                        pinged.append(await m.ping(sessions[0]))
                    assert [tether.HealthStatus.DEGRADED] == [h.status for h in pinged]
                    assert "RateLimitedError" in (pinged[0].detail or "")
                    scan.texts.append(repr(pinged[0]))

                    # Closes under a long Retry-After: typed, the record
                    # stays CLOSING, the session stays live.
                    fault_only(proxy, "retry_after_long", {"close"})
                    for session in sessions:
                        with pytest.raises(tether.RateLimitedError) as refused:
                            await m.close(session)
                        scan.caught(refused.value)
                    closing = [(await m.get(s.id)).state for s in sessions]
                    assert closing == [S.CLOSING] * n
                    live = target.live(await target.truth(truth_client, url, proxy))
                    assert ids <= live, "a close refused with 429 ended a session"

                    # The key quoted back, on every route.
                    fault_only(proxy, "quote_key", None)
                    for i in range(n):
                        with typed(errors, untyped, scan):
                            await m.create(
                                name, lifetime=600, **target.params(n + i + 1)
                            )
                        with typed(errors, untyped, scan):
                            await m.ping(sessions[i])
                        with typed(errors, untyped, scan):
                            await m.close(sessions[i])
                    # Exiting tries the closes again: refused, logged, typed.
                quoted = proxy.faults["quote_key"]
                scan.scan_store(sqlite_files(db))

                # The faults lifted: a repeated close, then a reconcile.
                proxy.rate = 0.0
                async with manager(target, proxy.url, store) as clean:
                    closed = await clean.close(sessions[0])
                    assert closed.state is S.CLOSED
                    await clean.reconcile(grace=0)
                    records = await clean.list()
                    scan.scan_store(sqlite_files(db))
            faults = +proxy.faults
        rows = await target.truth(truth_client, url, proxy)
    scan.scan_store(sqlite_files(db))

    leaks = target.live(rows)
    unended = [r for r in records if r.state in (S.ACTIVE, S.DEGRADED, S.CLOSING)]
    leaked = scan.leaks()
    for kind, count in faults.items():
        CHAOS[f"proxy.fault.{kind}"] += count
    CHAOS["proxy.failures (typed)"] += sum(errors.values()) + n + 2
    CHAOS["proxy.untyped_errors"] += len(untyped)
    CHAOS["proxy.secret_leaks"] += len(leaked)
    CHAOS["proxy.leaks"] += len(leaks)
    CHAOS["proxy.lost_records"] += len(unended)

    assert [] == untyped
    assert quoted >= 3 * n, "the key was not quoted back on every call"
    assert sum(errors.values()) >= 2 * n, "quoted errors were not raised"
    assert [] == leaked, f"{name}: the key appeared in {leaked}"
    assert set() == leaks, f"{name}: live on the emulator after reconcile: {leaks}"
    assert [] == unended, f"{name}: records left live after the faults lifted"


#: The faults a read-only pre-step gets: its answer lost, or never sent.
PRESTEP_FAULTS = ("drop_after_forward", "502", "504", "reset_before_forward")


async def test_a_failed_readonly_prestep_is_a_plain_failure(
    tmp_path: Path, anyio_backend: str
) -> None:
    """
    ``readonly_prestep``: a Morpheus create reads the model list (``GET
    /api/v1/models``) before it opens a session. With that read dropped,
    answered 502/504 or reset, the create fails typed but not with an unknown
    outcome (a read made nothing), no record is left CREATING, and the key's
    one session slot is free: the next create, with the read answered,
    succeeds. Each round is a fresh manager (the model list is cached per
    provider). At the end the gateway holds no session for the key.
    """
    target = TARGETS["morpheus"]
    store = f"sqlite:///{tmp_path / 'prestep.db'}"
    failures: Counter[str] = Counter()
    untyped: list[BaseException] = []
    rounds = max(len(PRESTEP_FAULTS), LIFECYCLES // 5)
    async with (
        emulator_process("morpheus", target.key) as url,
        httpx.AsyncClient(timeout=30) as truth_client,
    ):
        proxy = proxy_to(url, target, rate=0.0, seed=3 + (anyio_backend == "trio"))
        async with serve_proxy(proxy):
            with anyio.fail_after(PHASE * max(1, rounds // 4)):
                for i in range(rounds):
                    async with manager(target, proxy.url, store) as m:
                        fault_only(
                            proxy, PRESTEP_FAULTS[i % len(PRESTEP_FAULTS)], {"read"}
                        )
                        try:
                            await m.create("morpheus", lifetime=600, **target.params(i))
                        except tether.TetherError as exc:
                            failures[type(exc).__name__] += 1
                        except Exception as exc:  # the test's verdict
                            untyped.append(exc)
                        else:
                            failures["none (created)"] += 1
                        creating = await m.list(state=[S.CREATING])
                        assert [] == creating, f"round {i}: left CREATING"
                        proxy.rate = 0.0
                        # The key is not blocked: the next create goes through.
                        session = await m.create(
                            "morpheus", lifetime=600, **target.params(i)
                        )
                        live = target.live(await target.truth(truth_client, url))
                        assert {session.remote_id} == live
                        await m.close(session)
            faults = +proxy.faults
            reads = proxy.requests["read"]
        async with manager(target, url, store) as clean:
            records = await clean.list()
        rows = await target.truth(truth_client, url)

    leaks = target.live(rows)
    left = [r for r in records if r.state not in (S.FAILED, S.CLOSED)]
    for kind, count in faults.items():
        CHAOS[f"proxy.fault.readonly_prestep.{kind}"] += count
    CHAOS["proxy.fault.readonly_prestep"] += sum(faults.values())
    CHAOS["proxy.lifecycles"] += rounds
    CHAOS["proxy.failures (typed)"] += sum(failures.values())
    CHAOS["proxy.untyped_errors"] += len(untyped)
    CHAOS["proxy.leaks"] += len(leaks)
    CHAOS["proxy.lost_records"] += len(left)

    assert [] == untyped
    assert reads >= rounds, "the create never read the model list"
    assert sum(faults.values()) >= rounds
    assert "OutcomeUnknownError" not in failures, failures
    assert "none (created)" not in failures, "a create went through a failed read"
    assert failures.total() == rounds
    assert set() == leaks
    assert [] == left


async def test_a_store_cut_mid_operation_fails_typed_and_loses_nothing(
    redis_url: str, anyio_backend: str
) -> None:
    """
    ``store_down``: sandbox lifecycles, a few at a time, on a Redis store
    reached through a TCP forwarder (tests/_proxy.py's StoreCut). When a
    create, and later a close, reaches the service, the store is cut (every
    connection reset, new ones refused): that operation's next write, and
    the others' while it lasts, fail. It is restored once a few calls have
    failed. Every failure is a TetherError, store failures StoreErrors; after
    the store is back, a fresh manager reconciles: nothing is live on the
    emulator, no record is left unended, and every sandbox made has a record.
    """
    target = TARGETS["sandbox"]
    host, _, rest = redis_url.removeprefix("redis://").partition(":")
    redis_port = int(rest.split("/", 1)[0])
    namespace = f"chaos{uuid.uuid4().hex[:12]}"
    errors: Counter[str] = Counter()
    untyped: list[BaseException] = []
    cut = StoreCut(upstream=(host, redis_port))
    failed_while_down = 0
    lifecycles = max(12, LIFECYCLES)
    #: Cut at these creates and closes (1-based, as they reach the service).
    cut_at = {("create", 3), ("close", max(4, lifecycles // 2))}

    async def at_service(route: Route, _fault: str) -> None:
        nonlocal failed_while_down
        if (route, proxy.requests[route]) in cut_at and not cut.down:
            failed_while_down = 0
            cut.cut()

    def failed(exc: BaseException) -> None:
        nonlocal failed_while_down
        if isinstance(exc, tether.TetherError):
            errors[type(exc).__name__] += 1
        else:
            untyped.append(exc)
        if cut.down:
            failed_while_down += 1
            if failed_while_down >= 3:
                cut.restore()

    async with (
        emulator_process("sandbox", SANDBOX_KEY) as url,
        httpx.AsyncClient(timeout=30) as truth_client,
    ):
        proxy = proxy_to(url, target, rate=0.0, on_request=at_service)
        async with serve_proxy(proxy), serve_store_cut(cut):
            store = f"redis://127.0.0.1:{cut.port}/0?namespace={namespace}"
            started = iter(range(lifecycles))

            async def worker(m: tether.SessionManager) -> None:
                for i in started:
                    try:
                        session = await m.create(
                            "sandbox", lifetime=600, **target.params(i)
                        )
                        await m.ping(session)
                        await m.close(session)
                    except Exception as exc:  # the test's verdict
                        failed(exc)

            with anyio.fail_after(PHASE * max(1, lifecycles // 20)):
                try:
                    async with manager(target, proxy.url, store) as m:
                        async with anyio.create_task_group() as tg:
                            for _ in range(4):
                                tg.start_soon(worker, m)
                        cut.restore()
                except Exception as exc:  # the test's verdict
                    failed(exc)
                cut.restore()
        cuts, refused = cut.cuts, cut.refused

        with anyio.fail_after(PHASE):
            clean_store = f"{redis_url}?namespace={namespace}"
            async with manager(target, url, clean_store) as clean:
                await clean.reconcile(grace=0)
                for record in await clean.list(state=[S.ACTIVE, S.DEGRADED, S.CLOSING]):
                    await clean.close(record)
                records = await clean.list()
        rows = await sandbox_truth(truth_client, url)

    leaks = sandbox_live(rows)
    unended = [r for r in records if not r.state.is_terminal]
    recorded = {r.id for r in records}
    unrecorded = [
        r["sandbox_id"]
        for r in rows
        if (r.get("metadata") or {}).get("tether_id") not in recorded
    ]
    store_errors = sum(n for kind, n in errors.items() if kind.startswith("Store"))
    CHAOS["proxy.fault.store_down"] += cuts
    CHAOS["proxy.store_down.connections_reset"] += refused
    CHAOS["proxy.store_down.store_errors"] += store_errors
    CHAOS["proxy.lifecycles"] += lifecycles
    CHAOS["proxy.failures (typed)"] += sum(errors.values())
    CHAOS["proxy.untyped_errors"] += len(untyped)
    CHAOS["proxy.leaks"] += len(leaks)
    CHAOS["proxy.lost_records"] += len(unended) + len(unrecorded)

    assert [] == untyped
    assert cuts == len(cut_at), "the store was not cut at both operations"
    assert store_errors > 0, "no operation failed while the store was cut"
    assert set() == leaks, f"live on the emulator after reconcile: {leaks}"
    assert [] == unended, "records left unended after the store came back"
    assert [] == unrecorded, "sandboxes made without a record"
