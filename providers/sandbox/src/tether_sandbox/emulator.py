"""
A local emulator of InstaVM's session API, for tests and demos.

It follows what is known of the real service (``docs/providers/sandbox.md``):

* ``POST /v1/sessions/session`` with ``api_key`` in the JSON body; FastAPI-style
  422 bodies (``{"detail": [{"type", "loc", "msg", "input"}]}``) for bad input,
  the documented limits of ``vm_lifetime_seconds``, ``memory_mb`` and
  ``vcpu_count`` (the real status for out-of-range values is undocumented; the
  emulator answers 422 like a pydantic validator would);
* ``X-API-Key`` on every other endpoint (401 ``Not authenticated`` when missing,
  401 ``Invalid API key or session expired`` when wrong, 403 for someone
  else's session);
* a **lazy VM**: none exists until the first ``/execute``, unless ``env`` was
  given at create; the VM dies ``vm_lifetime_seconds`` after it spawned
  (computed from the injected clock on each request), and the next
  ``/execute`` silently spawns a new VM under the same session id;
* ``GET /v1/sessions/status/{id}``, ``POST /kill`` (404 when no VM is
  assigned), ``GET /v1/sessions/sandboxes?metadata=`` with JSON containment,
  ``POST /execute``, ``POST /execute_async`` and ``GET /v1/executions/{id}``;
* the session's other routes (record, usage, app URL, ``/upload``,
  ``/download``, egress policy), in :mod:`tether_sandbox._emulator_routes`:
  uploaded files live in the VM and die with it.

Code is never run: ``/execute`` understands a tiny, deterministic subset
(``print(<literal | name | os.environ[...]>)``, ``name = <literal>``,
``raise Error("...")`` in Python; ``echo``, ``echo ... > FILE`` and ``cat FILE``
in bash), enough to show that
variables live in the VM and are lost when the VM is replaced.

Control methods for tests (:meth:`SandboxEmulator.kill`,
:meth:`SandboxEmulator.replace_vm`, :meth:`SandboxEmulator.live_sessions`) are
plain Python methods, not HTTP routes.
"""

from __future__ import annotations

import ast
import email.utils
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tether.testing import FaultInjector
from tether_sandbox._emulator_routes import (
    SessionExtras,
    run_file_command,
    session_routes,
)


if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from starlette.requests import Request


__all__ = ["SandboxEmulator"]

_MIN_LIFETIME = 20
_MAX_LIFETIME = 86_400
_DEFAULT_LIFETIME = 300
_MIN_MEMORY = 128
_MAX_MEMORY = 8192
_DEFAULT_MEMORY = 1024
_VCPUS = (1, 2, 4, 6, 8)
_DEFAULT_VCPUS = 2
_MIN_EXEC_TIMEOUT = 1
_MAX_EXEC_TIMEOUT = 600
_MAX_LIST_LIMIT = 1000
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ENV_REF = re.compile(
    r"""^os\.environ(?:\[\s*(['"])(?P<a>[^'"]+)\1\s*\]|"""
    r"""\.get\(\s*(['"])(?P<b>[^'"]+)\3\s*\))$"""
)
_INVALID_KEY = "Invalid API key or session expired"


def _iso(ts: float) -> str:
    # The service writes naive ISO timestamps (UTC, no offset).
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat()


@attrs.define
class _VM:
    vm_id: str
    spawned_at: float
    lifetime: int
    killed_at: float | None = None
    variables: dict[str, Any] = attrs.Factory(dict)
    files: dict[str, bytes] = attrs.Factory(dict)

    def dies_at(self) -> float:
        return self.spawned_at + self.lifetime

    def alive(self, now: float) -> bool:
        return self.killed_at is None and now < self.dies_at()

    def ended_at(self) -> float:
        if self.killed_at is not None:
            return min(self.killed_at, self.dies_at())
        return self.dies_at()


@attrs.define
class _Session:
    id: str
    api_key: str
    created_at: float
    lifetime: int
    memory_mb: int
    vcpu_count: int
    metadata: dict[str, Any]
    env: dict[str, str] | None
    vm: _VM | None = None
    killed: bool = False
    vms_spawned: int = 0
    extras: SessionExtras = attrs.Factory(SessionExtras)


@attrs.define
class _Task:
    id: str
    api_key: str
    created_at: float
    stdout: str
    stderr: str
    polls_left: int


class _Invalid(Exception):  # noqa: N818 -- internal control flow
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid")
        self.errors = errors


def _unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def _detail(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _int_field(
    value: Any, loc: list[str | int], errors: list[dict[str, Any]]
) -> int | None:
    """
    Coerce like pydantic v2's lax ``int``: ints, bools, whole floats, numeric strings.
    """
    if value is None:
        return None
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        errors.append(
            {
                "type": "int_from_float",
                "loc": loc,
                "msg": "Input should be a valid integer, got a number with a "
                "fractional part",
                "input": value,
            }
        )
        return None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            errors.append(
                {
                    "type": "int_parsing",
                    "loc": loc,
                    "msg": "Input should be a valid integer, unable to parse string "
                    "as an integer",
                    "input": value,
                }
            )
            return None
    errors.append(
        {
            "type": "int_type",
            "loc": loc,
            "msg": "Input should be a valid integer",
            "input": value,
        }
    )
    return None


def _range(
    value: int | None,
    lo: int,
    hi: int,
    loc: list[str | int],
    errors: list[dict[str, Any]],
) -> None:
    if value is None:
        return
    if value < lo:
        errors.append(
            {
                "type": "greater_than_equal",
                "loc": loc,
                "msg": f"Input should be greater than or equal to {lo}",
                "input": value,
                "ctx": {"ge": lo},
            }
        )
    elif value > hi:
        errors.append(
            {
                "type": "less_than_equal",
                "loc": loc,
                "msg": f"Input should be less than or equal to {hi}",
                "input": value,
                "ctx": {"le": hi},
            }
        )


def _contains(target: Any, pattern: Any) -> bool:
    """
    Postgres ``@>`` containment on JSON values.
    """
    if isinstance(pattern, dict):
        return isinstance(target, dict) and all(
            k in target and _contains(target[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(target, list) and all(
            any(_contains(t, p) for t in target) for p in pattern
        )
    if isinstance(target, list):
        # A scalar is contained in an array holding it.
        return pattern in target
    return bool(target == pattern and type(target) is type(pattern))


@attrs.define
class SandboxEmulator:
    """
    InstaVM's session API as an in-memory ASGI app.

    Args:
        clock: Where the emulator reads the time (``ManualClock().time`` in tests).
        api_keys: The API keys it accepts.
        max_sessions: How many live sessions one key may hold (the tier limit);
            past it, create answers 403.
        async_polls: How many polls of ``/v1/executions/{id}`` answer
            ``is_complete: false`` before the result shows.
        reapply_env_on_respawn: Whether a VM spawned after the previous one died
            gets the session's ``env`` again (the real service does not say).
        default_memory_mb: The "system default" memory.
        startup_latency: Seconds a create takes to answer (the VM booting),
            real time, for benchmarks of cold starts. The session exists once
            the answer is sent.

    Attributes:
        app: The ASGI app, wrapped in :class:`~tether.testing.FaultInjector`.
        faults: The same fault injector (set ``rate``, ``kinds``, ``seed``).
    """

    clock: Callable[[], float] = time.time
    api_keys: Collection[str] = ("instavm_sk_emulator",)
    max_sessions: int | None = None
    async_polls: int = 1
    reapply_env_on_respawn: bool = True
    default_memory_mb: int = _DEFAULT_MEMORY
    startup_latency: float = 0.0
    faults: FaultInjector = attrs.field(init=False)
    _sessions: dict[str, _Session] = attrs.field(init=False, factory=dict)
    _tasks: dict[str, _Task] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        routes = [
            Route("/v1/sessions/session", self._create, methods=["POST"]),
            Route("/v1/sessions/status/{session_id}", self._status, methods=["GET"]),
            Route("/v1/sessions/sandboxes", self._sandboxes, methods=["GET"]),
            Route("/kill", self._kill, methods=["POST"]),
            Route("/execute", self._execute, methods=["POST"]),
            Route("/execute_async", self._execute_async, methods=["POST"]),
            Route("/v1/executions/{task_id}", self._execution, methods=["GET"]),
            *session_routes(self),
        ]
        starlette = Starlette(routes=routes)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            # Real servers send Date; the provider reads "now" from it, so the
            # emulator's (manual) clock is what the client sees.
            async def send_with_date(message: Any) -> None:
                if message["type"] == "http.response.start":
                    date = email.utils.formatdate(self.clock(), usegmt=True)
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"date", date.encode()),
                    ]
                await send(message)

            await starlette(scope, receive, send_with_date)

        self.faults = FaultInjector(app)

    @property
    def app(self) -> FaultInjector:
        """
        The ASGI app to serve.
        """
        return self.faults

    # -- control methods for tests ---------------------------------------------

    def live_sessions(self) -> set[str]:
        """
        Ids of sessions the service considers usable: exist, not killed, and
        either without a VM yet or with a live one.
        """
        now = self.clock()
        return {
            s.id
            for s in self._sessions.values()
            if not s.killed and (s.vm is None or s.vm.alive(now))
        }

    def session(self, session_id: str) -> Mapping[str, Any]:
        """
        A snapshot of one session, for assertions.
        """
        s = self._sessions[session_id]
        return {
            "id": s.id,
            "vm_lifetime_seconds": s.lifetime,
            "memory_mb": s.memory_mb,
            "vcpu_count": s.vcpu_count,
            "metadata": dict(s.metadata),
            "env": dict(s.env) if s.env is not None else None,
            "vm_id": s.vm.vm_id if s.vm else None,
            "killed": s.killed,
            "vms_spawned": s.vms_spawned,
        }

    def kill(self, session_id: str) -> None:
        """
        End a session server-side, as an out-of-band ``/kill`` would.
        """
        s = self._sessions[session_id]
        now = self.clock()
        s.killed = True
        if s.vm is not None and s.vm.killed_at is None:
            s.vm.killed_at = now

    def spawn_vm(self, session_id: str) -> str:
        """
        Spawn the session's VM now (as its first ``/execute`` would); return its id.
        """
        return self._ensure_vm(self._sessions[session_id]).vm_id

    def replace_vm(self, session_id: str) -> str:
        """
        Replace the session's VM with a fresh one (state lost), as the service
        does when ``/execute`` comes after the VM died; return the new id.
        """
        s = self._sessions[session_id]
        return self._spawn(s).vm_id

    # -- internals ---------------------------------------------------------------

    def _spawn(self, s: _Session) -> _VM:
        s.vms_spawned += 1
        vm = _VM(
            vm_id=f"vm-{uuid.uuid4().hex[:12]}",
            spawned_at=self.clock(),
            lifetime=s.lifetime,
        )
        if s.env and (s.vms_spawned == 1 or self.reapply_env_on_respawn):
            vm.variables["__env__"] = dict(s.env)
        s.vm = vm
        s.extras.vms.append(vm)
        return vm

    def _ensure_vm(self, s: _Session) -> _VM:
        if s.vm is None or not s.vm.alive(self.clock()):
            return self._spawn(s)
        return s.vm

    def _header_key(self, request: Request) -> str | JSONResponse:
        key = request.headers.get("x-api-key")
        if not key:
            return JSONResponse(
                {"detail": "Not authenticated"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        if key not in self.api_keys:
            return _detail(401, _INVALID_KEY)
        return key

    async def _json_body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except ValueError as exc:
            pos = getattr(exc, "pos", 0)
            raise _Invalid(
                [
                    {
                        "type": "json_invalid",
                        "loc": ["body", pos],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": str(getattr(exc, "msg", exc))},
                    }
                ]
            ) from None

    def _owned(self, session_id: str, key: str) -> _Session | JSONResponse:
        try:
            uuid.UUID(session_id)
        except ValueError:
            return _detail(400, "Invalid session_id format")
        s = self._sessions.get(session_id)
        if s is None:
            return _detail(404, "Session not found")
        if s.api_key != key:
            return _detail(403, "You do not have permission to access this session")
        return s

    def _parse_create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Invalid(
                [
                    {
                        "type": "model_attributes_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid dictionary or object to "
                        "extract fields from",
                        "input": body,
                    }
                ]
            )
        errors: list[dict[str, Any]] = []
        key = body.get("api_key")
        if "api_key" not in body:
            errors.append(
                {
                    "type": "missing",
                    "loc": ["body", "api_key"],
                    "msg": "Field required",
                    "input": body,
                }
            )
        elif not isinstance(key, str):
            errors.append(
                {
                    "type": "string_type",
                    "loc": ["body", "api_key"],
                    "msg": "Input should be a valid string",
                    "input": key,
                }
            )
        lifetime = _int_field(
            body.get("vm_lifetime_seconds"), ["body", "vm_lifetime_seconds"], errors
        )
        memory = _int_field(body.get("memory_mb"), ["body", "memory_mb"], errors)
        vcpus = _int_field(body.get("vcpu_count"), ["body", "vcpu_count"], errors)
        _range(
            lifetime,
            _MIN_LIFETIME,
            _MAX_LIFETIME,
            ["body", "vm_lifetime_seconds"],
            errors,
        )
        _range(memory, _MIN_MEMORY, _MAX_MEMORY, ["body", "memory_mb"], errors)
        if vcpus is not None and vcpus not in _VCPUS:
            errors.append(
                {
                    "type": "literal_error",
                    "loc": ["body", "vcpu_count"],
                    "msg": "Input should be 1, 2, 4, 6 or 8",
                    "input": vcpus,
                    "ctx": {"expected": "1, 2, 4, 6 or 8"},
                }
            )
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            errors.append(
                {
                    "type": "dict_type",
                    "loc": ["body", "metadata"],
                    "msg": "Input should be a valid dictionary",
                    "input": metadata,
                }
            )
        env = body.get("env")
        if env is not None:
            if not isinstance(env, dict):
                errors.append(
                    {
                        "type": "dict_type",
                        "loc": ["body", "env"],
                        "msg": "Input should be a valid dictionary",
                        "input": env,
                    }
                )
            else:
                errors.extend(
                    {
                        "type": "string_type",
                        "loc": ["body", "env", k],
                        "msg": "Input should be a valid string",
                        "input": v,
                    }
                    for k, v in env.items()
                    if not isinstance(v, str)
                )
        if errors:
            raise _Invalid(errors)
        return {
            "api_key": key,
            "lifetime": _DEFAULT_LIFETIME if lifetime is None else lifetime,
            "memory_mb": self.default_memory_mb if memory is None else memory,
            "vcpu_count": _DEFAULT_VCPUS if vcpus is None else vcpus,
            "metadata": metadata or {},
            "env": env,
        }

    # -- routes ------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        try:
            fields = self._parse_create(await self._json_body(request))
        except _Invalid as exc:
            return _unprocessable(exc.errors)
        key = fields["api_key"]
        if key not in self.api_keys:
            return _detail(401, _INVALID_KEY)
        if self.startup_latency > 0:
            # Booting; the limit is checked after, with no await before the
            # session is stored, so concurrent creates cannot overshoot it.
            await anyio.sleep(self.startup_latency)
        if self.max_sessions is not None:
            live = self.live_sessions()
            mine = [sid for sid in live if self._sessions[sid].api_key == key]
            if len(mine) >= self.max_sessions:
                return _detail(
                    403,
                    f"Session limit reached for your tier ({self.max_sessions} "
                    "concurrent sessions)",
                )
        s = _Session(
            id=str(uuid.uuid4()),
            api_key=key,
            created_at=self.clock(),
            lifetime=fields["lifetime"],
            memory_mb=fields["memory_mb"],
            vcpu_count=fields["vcpu_count"],
            metadata=fields["metadata"],
            env=fields["env"],
        )
        self._sessions[s.id] = s
        if s.env is not None:
            # "If provided, a VM will be spawned immediately."
            self._spawn(s)
        return JSONResponse({"session_id": s.id})

    async def _status(self, request: Request) -> Response:
        key = self._header_key(request)
        if isinstance(key, JSONResponse):
            return key
        session_id = request.path_params["session_id"]
        found = self._owned(session_id, key)
        if isinstance(found, JSONResponse):
            if found.status_code == 404:  # noqa: PLR2004
                return JSONResponse(
                    {
                        "session_id": session_id,
                        "exists": False,
                        "vm_assigned": False,
                        "vm_status": None,
                        "vm_id": None,
                        "vm_alive": False,
                        "uptime_seconds": None,
                        "expires_in_seconds": None,
                        "created_at": None,
                    }
                )
            return found
        s = found
        now = self.clock()
        vm = s.vm
        body: dict[str, Any] = {
            "session_id": s.id,
            "exists": True,
            "vm_assigned": vm is not None,
            "vm_status": None,
            "vm_id": None,
            "vm_alive": False,
            "uptime_seconds": None,
            "expires_in_seconds": None,
            "created_at": _iso(s.created_at),
        }
        if vm is None and s.killed:
            body["vm_status"] = "killed"
        if vm is not None:
            alive = vm.alive(now)
            if alive:
                vm_status = "active"
            elif vm.killed_at is not None and vm.killed_at < vm.dies_at():
                vm_status = "killed"
            else:
                vm_status = "expired"
            end = now if alive else vm.ended_at()
            body.update(
                vm_status=vm_status,
                vm_id=vm.vm_id,
                vm_alive=alive,
                uptime_seconds=round(end - vm.spawned_at, 2),
                expires_in_seconds=round(vm.dies_at() - now, 2) if alive else 0,
            )
        return JSONResponse(body)

    async def _sandboxes(self, request: Request) -> Response:
        key = self._header_key(request)
        if isinstance(key, JSONResponse):
            return key
        raw_limit = request.query_params.get("limit", "100")
        errors: list[dict[str, Any]] = []
        limit = _int_field(raw_limit, ["query", "limit"], errors)
        _range(limit, 1, _MAX_LIST_LIMIT, ["query", "limit"], errors)
        if errors:
            for e in errors:
                e["input"] = raw_limit
            return _unprocessable(errors)
        pattern: Any = None
        raw_metadata = request.query_params.get("metadata")
        if raw_metadata:
            try:
                pattern = json.loads(raw_metadata)
            except ValueError:
                return _detail(400, "Invalid metadata JSON")
        now = self.clock()
        rows = []
        mine = [s for s in self._sessions.values() if s.api_key == key]
        mine.sort(key=lambda s: s.created_at, reverse=True)
        for s in mine:
            if pattern is not None and not _contains(s.metadata, pattern):
                continue
            vm = s.vm
            if s.killed:
                status = "killed"
            elif vm is None:
                status = "created"
            elif vm.alive(now):
                status = "active"
            else:
                status = "expired"
            rows.append(
                {
                    "sandbox_id": s.id,
                    "template_id": f"snap{s.vcpu_count}",
                    "name": f"snap{s.vcpu_count}",
                    "metadata": s.metadata,
                    "started_at": _iso(vm.spawned_at if vm else s.created_at),
                    "end_at": None
                    if vm is None
                    else _iso(vm.ended_at() if not vm.alive(now) else vm.dies_at()),
                    "status": status,
                }
            )
        assert limit is not None  # noqa: S101 -- defaulted above
        return JSONResponse(rows[:limit])

    async def _kill(self, request: Request) -> Response:
        key = self._header_key(request)
        if isinstance(key, JSONResponse):
            return key
        try:
            body = await self._json_body(request)
        except _Invalid as exc:
            return _unprocessable(exc.errors)
        if not isinstance(body, dict) or not isinstance(body.get("session_id"), str):
            return _unprocessable(
                [
                    {
                        "type": "missing",
                        "loc": ["body", "session_id"],
                        "msg": "Field required",
                        "input": body,
                    }
                ]
            )
        found = self._owned(body["session_id"], key)
        if isinstance(found, JSONResponse):
            return found
        s = found
        now = self.clock()
        if s.killed:
            return _detail(404, "Session not found")
        if s.vm is None:
            # Documented: 404 when no VM is assigned. The emulator also ends
            # the session record (the real service's handling is unknown; the
            # record holds no VM either way).
            s.killed = True
            return _detail(404, "No VM assigned to this session")
        if not s.vm.alive(now):
            return _detail(404, "No VM assigned to this session")
        vm_id = s.vm.vm_id
        self.kill(s.id)
        return JSONResponse({"message": f"VM {vm_id} killed", "vm_id": vm_id})

    async def _parse_command(
        self, request: Request
    ) -> tuple[_Session, str, dict[str, Any]] | JSONResponse:
        key = self._header_key(request)
        if isinstance(key, JSONResponse):
            # CommandRequest also takes api_key in the body.
            try:
                peek = json.loads(await request.body())
            except ValueError:
                peek = None
            if not (isinstance(peek, dict) and peek.get("api_key") in self.api_keys):
                return key
            key = peek["api_key"]
        try:
            body = await self._json_body(request)
        except _Invalid as exc:
            return _unprocessable(exc.errors)
        if not isinstance(body, dict):
            return _unprocessable(
                [
                    {
                        "type": "model_attributes_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid dictionary or object to "
                        "extract fields from",
                        "input": body,
                    }
                ]
            )
        errors: list[dict[str, Any]] = []
        timeout = _int_field(body.get("timeout", 60), ["body", "timeout"], errors)
        _range(
            timeout, _MIN_EXEC_TIMEOUT, _MAX_EXEC_TIMEOUT, ["body", "timeout"], errors
        )
        for name in ("command", "code", "session_id", "language"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                errors.append(
                    {
                        "type": "string_type",
                        "loc": ["body", name],
                        "msg": "Input should be a valid string",
                        "input": value,
                    }
                )
        if errors:
            return _unprocessable(errors)
        source = body.get("code") or body.get("command")
        if not source:
            return _detail(400, "Either 'command' or 'code' must be provided")
        session_id = body.get("session_id")
        if not session_id:
            return _detail(400, "session_id is required")
        found = self._owned(session_id, key)
        if isinstance(found, JSONResponse):
            return found
        if found.killed:
            return _detail(404, "Session not found or terminated")
        return found, str(source), body

    def _run(self, s: _Session, source: str, language: str) -> tuple[str, str]:
        vm = self._ensure_vm(s)
        env: dict[str, str] = vm.variables.get("__env__", {})
        out: list[str] = []
        if language in ("bash", "shell", "sh"):
            for line in source.splitlines():
                words = line.strip()
                if (done := run_file_command(vm, words)) is not None:
                    out.append(done)
                elif words.startswith("echo"):
                    text = words[4:].strip().strip("'\"")
                    text = re.sub(
                        r"\$\{?(" + _NAME + r")\}?", lambda m: env.get(m[1], ""), text
                    )
                    out.append(text + "\n")
            return "".join(out), ""
        for line in source.splitlines():
            stmt = line.strip()
            if not stmt or stmt.startswith(("#", "import ")):
                continue
            if m := re.fullmatch(r"print\((.*)\)", stmt):
                try:
                    value = self._value(m[1].strip(), vm, env)
                except NameError as exc:
                    return "".join(out), _traceback("NameError", str(exc))
                out.append(f"{value}\n")
            elif m := re.fullmatch(rf"({_NAME})\s*=\s*(.+)", stmt):
                try:
                    vm.variables[m[1]] = self._value(m[2].strip(), vm, env)
                except NameError as exc:
                    return "".join(out), _traceback("NameError", str(exc))
            elif m := re.fullmatch(rf"raise ({_NAME})\((.*)\)", stmt):
                arg = m[2].strip()
                try:
                    message = str(ast.literal_eval(arg)) if arg else ""
                except (ValueError, SyntaxError):
                    message = arg
                return "".join(out), _traceback(m[1], message)
        return "".join(out), ""

    @staticmethod
    def _value(expr: str, vm: _VM, env: Mapping[str, str]) -> Any:
        if m := _ENV_REF.fullmatch(expr):
            name = m["a"] or m["b"]
            if m["a"] and name not in env:
                raise NameError(f"KeyError: {name!r}")
            return env.get(name)
        if re.fullmatch(_NAME, expr) and expr not in ("None", "True", "False"):
            if expr not in vm.variables or expr == "__env__":
                raise NameError(f"name {expr!r} is not defined")
            return vm.variables[expr]
        try:
            return ast.literal_eval(expr)
        except (ValueError, SyntaxError):
            return expr

    async def _execute(self, request: Request) -> Response:
        parsed = await self._parse_command(request)
        if isinstance(parsed, Response):
            return parsed
        s, source, body = parsed
        stdout, stderr = self._run(s, source, body.get("language") or "python")
        s.extras.record_execution(0.01, 0.005)
        return JSONResponse(
            {
                "stdout": stdout,
                "stderr": stderr,
                "execution_time": 0.01,
                "cpu_time": 0.005,
            }
        )

    async def _execute_async(self, request: Request) -> Response:
        parsed = await self._parse_command(request)
        if isinstance(parsed, Response):
            return parsed
        s, source, body = parsed
        stdout, stderr = self._run(s, source, body.get("language") or "python")
        s.extras.record_execution(0.01, 0.005)
        task = _Task(
            id=str(uuid.uuid4()),
            api_key=s.api_key,
            created_at=self.clock(),
            stdout=stdout,
            stderr=stderr,
            polls_left=self.async_polls,
        )
        self._tasks[task.id] = task
        return JSONResponse({"task_id": task.id})

    async def _execution(self, request: Request) -> Response:
        key = self._header_key(request)
        if isinstance(key, JSONResponse):
            return key
        task = self._tasks.get(request.path_params["task_id"])
        if task is None or task.api_key != key:
            return _detail(404, "Execution not found")
        done = task.polls_left <= 0
        task.polls_left -= 1
        return JSONResponse(
            {
                "is_complete": done,
                "serialized_stdout": task.stdout if done else "",
                "serialized_stderr": task.stderr if done else "",
                "cpu_time": 0.005 if done else None,
                "created_at": _iso(task.created_at),
                "execution_time": 0.01 if done else None,
            }
        )


def _traceback(kind: str, message: str) -> str:
    tail = f"{kind}: {message}" if message else kind
    return f'Traceback (most recent call last):\n  File "<stdin>", line 1\n{tail}\n'
