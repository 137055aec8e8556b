"""
The sandbox emulator's session-scoped routes beyond the lifecycle: session
record, usage, app URL, file upload and download, and the session egress
policy.

Kept apart from :mod:`tether_sandbox.emulator` (which imports
:func:`session_routes`) so the lifecycle emulator and these routes change
independently. What each route answers, and which parts are documented by
InstaVM versus chosen here, is listed in ``docs/providers/sandbox.md``
("The emulator").
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import attrs
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


if TYPE_CHECKING:
    from starlette.requests import Request

    from tether_sandbox.emulator import _VM, SandboxEmulator, _Session


__all__ = ["SessionExtras", "run_file_command", "session_routes"]

#: Where relative paths land: ``execute()`` and ``upload_file()`` run in ``/app``
#: (InstaVM's agent skill).
WORKDIR: Final = "/app"
_MIN_PORT: Final = 1
_MAX_PORT: Final = 65_535
_DEFAULT_PORT: Final = 80
#: The documented egress policy fields (``instavm.io/docs/concepts/egress-policies``).
EGRESS_FLAGS: Final = ("allow_package_managers", "allow_http", "allow_https")
EGRESS_LISTS: Final = ("allowed_domains", "allowed_cidrs")
_ENDED = "Session not found or terminated"
_NO_VM = "No VM assigned to this session"
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _deny_all() -> dict[str, Any]:
    # Egress is deny-by-default.
    return {
        **dict.fromkeys(EGRESS_FLAGS, False),
        **{name: [] for name in EGRESS_LISTS},
    }


@attrs.define
class SessionExtras:
    """
    Per-session state these routes keep: the egress policy, every VM the
    session had (for usage), and execution counters.
    """

    egress: dict[str, Any] = attrs.Factory(_deny_all)
    vms: list[_VM] = attrs.Factory(list)
    executions: int = 0
    execution_time: float = 0.0
    cpu_time: float = 0.0

    def record_execution(self, execution_time: float, cpu_time: float) -> None:
        """
        Count one ``/execute`` or ``/execute_async`` that ran.
        """
        self.executions += 1
        self.execution_time += execution_time
        self.cpu_time += cpu_time


def _normalize(path: str) -> str:
    joined = path if path.startswith("/") else posixpath.join(WORKDIR, path)
    return posixpath.normpath(joined)


_CAT = re.compile(r"^cat\s+(?P<path>\S+)$")
_WRITE = re.compile(r"""^echo\s+(?P<q>['"]?)(?P<text>.*?)(?P=q)\s*>\s*(?P<path>\S+)$""")


def run_file_command(vm: _VM, line: str) -> str | None:
    """
    The bash lines that touch the VM's files: ``cat PATH`` (its output) and
    ``echo TEXT > PATH`` (writes ``TEXT\\n``); ``None`` for any other line.
    """
    if m := _CAT.fullmatch(line):
        data = vm.files.get(_normalize(m["path"]))
        if data is None:
            return f"cat: {m['path']}: No such file or directory\n"
        return data.decode("utf-8", "replace")
    if m := _WRITE.fullmatch(line):
        vm.files[_normalize(m["path"])] = (m["text"] + "\n").encode()
        return ""
    return None


def _missing(name: str, found: Any) -> dict[str, Any]:
    return {
        "type": "missing",
        "loc": ["body", name],
        "msg": "Field required",
        "input": found,
    }


def _string_type(loc: list[str | int], value: Any) -> dict[str, Any]:
    return {
        "type": "string_type",
        "loc": loc,
        "msg": "Input should be a valid string",
        "input": value,
    }


def _bool(value: Any, loc: list[str | int], errors: list[dict[str, Any]]) -> bool:
    """
    Coerce like pydantic v2's lax ``bool``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    kind = "bool_parsing" if isinstance(value, str) else "bool_type"
    errors.append(
        {
            "type": kind,
            "loc": loc,
            "msg": "Input should be a valid boolean"
            + (", unable to interpret input" if kind == "bool_parsing" else ""),
            "input": value,
        }
    )
    return False


def _parse_multipart(
    body: bytes, content_type: str
) -> dict[str, tuple[str | None, bytes]]:
    """
    ``multipart/form-data`` fields by name: (filename, bytes), byte-exact.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {}
    delimiter = b"--" + match[1].encode("latin-1")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        content = content.removesuffix(b"\r\n")
        disposition = ""
        for raw in head.decode("latin-1").split("\r\n"):
            key, _, value = raw.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name is None:
            continue
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        fields[name[1]] = (filename[1] if filename else None, content)
    return fields


async def _form(request: Request) -> dict[str, tuple[str | None, bytes]]:
    """
    A form body (multipart or urlencoded) by field name; empty for any other body.
    """
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return _parse_multipart(body, content_type)
    if content_type.startswith("application/x-www-form-urlencoded"):
        pairs = urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return {k: (None, v.encode("latin-1")) for k, v in pairs}
    return {}


def _require(
    form: dict[str, tuple[str | None, bytes]], names: tuple[str, ...]
) -> list[dict[str, Any]]:
    return [_missing(name, None) for name in names if name not in form]


def _text(form: dict[str, tuple[str | None, bytes]], name: str) -> str:
    return form[name][1].decode("utf-8", "replace")


def _vm_status(vm: _VM, now: float) -> str:
    if vm.alive(now):
        return "active"
    if vm.killed_at is not None and vm.killed_at < vm.dies_at():
        return "killed"
    return "expired"


def _session_status(s: _Session, now: float) -> str:
    # The same vocabulary as /v1/sessions/sandboxes.
    if s.killed:
        return "killed"
    if s.vm is None:
        return "created"
    return _vm_status(s.vm, now)


@attrs.frozen
class _Routes:
    emulator: SandboxEmulator

    def _session(
        self, request: Request, session_id: str, *, key: str | None = None
    ) -> _Session | JSONResponse:
        if key is None:
            found = self.emulator._header_key(request)  # noqa: SLF001
            if isinstance(found, JSONResponse):
                return found
            key = found
        return self.emulator._owned(session_id, key)  # noqa: SLF001

    async def info(self, request: Request) -> Response:
        s = self._session(request, request.path_params["session_id"])
        if isinstance(s, JSONResponse):
            return s
        now = self.emulator.clock()
        # The service documents only "session record details" with a
        # `session_id`; the rest is the record this emulator keeps. `env`
        # is never echoed (its values may be secrets).
        return JSONResponse(
            {
                "session_id": s.id,
                "status": _session_status(s, now),
                "created_at": _iso(s.created_at),
                "vm_lifetime_seconds": s.lifetime,
                "memory_mb": s.memory_mb,
                "vcpu_count": s.vcpu_count,
                "metadata": s.metadata,
                "vm_id": s.vm.vm_id if s.vm else None,
            }
        )

    async def usage(self, request: Request) -> Response:
        s = self._session(request, request.path_params["session_id"])
        if isinstance(s, JSONResponse):
            return s
        now = self.emulator.clock()
        extras = s.extras
        vm_seconds = sum(
            (now if vm.alive(now) else vm.ended_at()) - vm.spawned_at
            for vm in extras.vms
        )
        return JSONResponse(
            {
                "session_id": s.id,
                "executions": extras.executions,
                "execution_time": round(extras.execution_time, 6),
                "cpu_time": round(extras.cpu_time, 6),
                "vm_seconds": round(max(vm_seconds, 0.0), 2),
                "vms_spawned": s.vms_spawned,
            }
        )

    async def app_url(self, request: Request) -> Response:
        s = self._session(request, request.path_params["session_id"])
        if isinstance(s, JSONResponse):
            return s
        raw = request.query_params.get("port", str(_DEFAULT_PORT))
        errors: list[dict[str, Any]] = []
        # The lifecycle emulator's own pydantic-style coercion and bounds.
        from tether_sandbox.emulator import _int_field, _range  # noqa: PLC0415

        port = _int_field(raw, ["query", "port"], errors)
        _range(port, _MIN_PORT, _MAX_PORT, ["query", "port"], errors)
        if errors:
            for e in errors:
                e["input"] = raw
            return JSONResponse({"detail": errors}, status_code=422)
        assert port is not None  # noqa: S101 -- defaulted above
        vm = s.vm
        if vm is None:
            # A VM is needed for its id and address; none exists before the
            # first execution (as for /kill, documented 404).
            return JSONResponse({"detail": _NO_VM}, status_code=404)
        now = self.emulator.clock()
        alive = vm.alive(now)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "url": f"{base}/v1/app/{s.id}/{port}/",
                "direct_url": f"https://{vm.vm_id}-{port}.sandbox.instavm.io/",
                "vm_ip": f"172.30.{s.vms_spawned % 250}.2",
                "port": port,
                "vm_id": vm.vm_id,
                "session_id": s.id,
                # Documented values: active/killed.
                "status": "active" if alive else "killed",
                "expires_in_seconds": int(vm.dies_at() - now) if alive else 0,
            }
        )

    async def upload(self, request: Request) -> Response:
        form = await _form(request)
        errors = _require(form, ("file", "remote_path", "session_id"))
        recursive = False
        if "recursive" in form:
            recursive = _bool(_text(form, "recursive"), ["body", "recursive"], errors)
        if errors:
            return JSONResponse({"detail": errors}, status_code=422)
        data = form["file"][1]
        remote_path = _text(form, "remote_path")
        session_id = _text(form, "session_id")
        api_key = form.get("api_key")
        key: str | None = None
        if request.headers.get("x-api-key") is None and api_key is not None:
            # The upload form also takes `api_key` (documented).
            key = api_key[1].decode("latin-1")
            if key not in self.emulator.api_keys:
                return JSONResponse(
                    {"detail": "Invalid API key or session expired"}, status_code=401
                )
        s = self._session(request, session_id, key=key)
        if isinstance(s, JSONResponse):
            return s
        if s.killed:
            return JSONResponse({"detail": _ENDED}, status_code=404)
        if recursive:
            return JSONResponse(
                {"detail": "recursive uploads are not emulated"}, status_code=501
            )
        if not remote_path.strip():
            return JSONResponse({"detail": "remote_path is empty"}, status_code=400)
        # Like /execute, an upload lands in the session's VM, spawning one if
        # there is none (or it died).
        vm = self.emulator._ensure_vm(s)  # noqa: SLF001
        path = _normalize(remote_path)
        vm.files[path] = data
        return JSONResponse({"remote_path": path, "size": len(data)})

    async def download(self, request: Request) -> Response:
        key = self.emulator._header_key(request)  # noqa: SLF001
        if isinstance(key, JSONResponse):
            return key
        form = await _form(request)
        errors = _require(form, ("filename", "session_id"))
        if errors:
            return JSONResponse({"detail": errors}, status_code=422)
        filename = _text(form, "filename")
        session_id = _text(form, "session_id")
        s = self.emulator._owned(session_id, key)  # noqa: SLF001
        if isinstance(s, JSONResponse):
            return s
        vm = s.vm
        data = None
        if vm is not None and vm.alive(self.emulator.clock()):
            data = vm.files.get(_normalize(filename))
        if data is None:
            # Files live in the VM: none before its first spawn, gone with it.
            return JSONResponse({"detail": "File not found"}, status_code=404)
        return JSONResponse({"content": base64.b64encode(data).decode("ascii")})

    async def egress(self, request: Request) -> Response:
        s = self._session(request, request.path_params["session_id"])
        if isinstance(s, JSONResponse):
            return s
        if request.method == "GET":
            return JSONResponse(_copy(s.extras.egress))
        if s.killed:
            return JSONResponse({"detail": _ENDED}, status_code=404)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "type": "json_invalid",
                            "loc": ["body", getattr(exc, "pos", 0)],
                            "msg": "JSON decode error",
                            "input": {},
                        }
                    ]
                },
                status_code=422,
            )
        policy = _parse_egress(body)
        if isinstance(policy, list):
            return JSONResponse({"detail": policy}, status_code=422)
        # A set replaces the whole policy; omitted fields take the
        # deny-by-default values.
        s.extras.egress = policy
        return JSONResponse(_copy(policy))


def _copy(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, list) else v for k, v in policy.items()}


def _parse_egress(body: Any) -> dict[str, Any] | list[dict[str, Any]]:
    if not isinstance(body, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract "
                "fields from",
                "input": body,
            }
        ]
    errors: list[dict[str, Any]] = []
    policy = _deny_all()
    for name in EGRESS_FLAGS:
        if name in body:
            policy[name] = _bool(body[name], ["body", name], errors)
    for name in EGRESS_LISTS:
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if not isinstance(value, list):
            errors.append(
                {
                    "type": "list_type",
                    "loc": ["body", name],
                    "msg": "Input should be a valid list",
                    "input": value,
                }
            )
            continue
        bad = [
            _string_type(["body", name, i], v)
            for i, v in enumerate(value)
            if not isinstance(v, str)
        ]
        errors.extend(bad)
        if not bad:
            policy[name] = list(value)
    return errors or policy


def _iso(ts: float) -> str:
    from tether_sandbox.emulator import _iso as iso  # noqa: PLC0415

    return iso(ts)


def session_routes(emulator: SandboxEmulator) -> list[Route]:
    """
    The routes, bound to *emulator*'s sessions and clock.
    """
    routes = _Routes(emulator)
    return [
        Route("/v1/sessions/session/{session_id}", routes.info, methods=["GET"]),
        Route("/v1/sessions/usage/{session_id}", routes.usage, methods=["GET"]),
        Route("/v1/sessions/app-url/{session_id}", routes.app_url, methods=["GET"]),
        Route("/upload", routes.upload, methods=["POST"]),
        Route("/download", routes.download, methods=["POST"]),
        Route(
            "/v1/egress/session/{session_id}", routes.egress, methods=["GET", "POST"]
        ),
    ]
