"""
The emulator's session routes beyond the lifecycle (record, usage, app URL,
upload, download, egress), spoken to over a real socket with raw HTTP, the
way InstaVM's SDK sends its requests; bodies checked against the schemas.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tether.testing import ASGIServer, ManualClock
from tether_sandbox.emulator import SandboxEmulator


KEY = "instavm_sk_test_9f8e7d6c5b4a"
OTHER_KEY = "instavm_sk_other_112233445566"
SCHEMAS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "spec" / "instavm-session-schemas.json").read_text()
)
DENY_ALL = {
    "allow_package_managers": False,
    "allow_http": False,
    "allow_https": False,
    "allowed_domains": [],
    "allowed_cidrs": [],
}


def check(name: str, body: Any) -> None:
    """
    Validate *body* against one of the schemas.
    """
    jsonschema.validate(body, SCHEMAS[name])


async def create(http: httpx.AsyncClient, **fields: Any) -> str:
    response = await http.post("/v1/sessions/session", json={"api_key": KEY, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["session_id"])


async def bash(http: httpx.AsyncClient, sid: str, command: str) -> dict[str, Any]:
    response = await http.post(
        "/execute", json={"command": command, "language": "bash", "session_id": sid}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def upload(
    http: httpx.AsyncClient, sid: str, remote_path: str, data: bytes, **extra: str
) -> httpx.Response:
    """
    An upload as the SDK's ``upload_file`` sends it: multipart, ``file`` plus
    form fields ``remote_path``, ``session_id`` and ``recursive="false"``.
    """
    fields = {"remote_path": remote_path, "session_id": sid, "recursive": "false"}
    # On the wire a form holds strings; the model reads "false" as a boolean.
    model: dict[str, Any] = {**fields, **extra, "file": ""}
    model["recursive"] = model["recursive"] == "true"
    check("Body_upload_file_endpoint_upload_post", model)
    return await http.post(
        "/upload", data={**fields, **extra}, files={"file": ("f.bin", data)}
    )


async def download(http: httpx.AsyncClient, sid: str, filename: str) -> httpx.Response:
    """
    A download as the SDK's ``download_file`` sends it: form fields
    ``filename`` and ``session_id``.
    """
    return await http.post("/download", data={"filename": filename, "session_id": sid})


def content(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    check("DownloadResponse", response.json())
    return base64.b64decode(response.json()["content"], validate=True)


# -- auth, shared by every route ----------------------------------------------

ROUTES = [
    ("GET", "/v1/sessions/session/{sid}"),
    ("GET", "/v1/sessions/usage/{sid}"),
    ("GET", "/v1/sessions/app-url/{sid}"),
    ("GET", "/v1/egress/session/{sid}"),
    ("POST", "/v1/egress/session/{sid}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_path_routes_check_the_key_and_the_owner(
    http: httpx.AsyncClient, server: ASGIServer, method: str, path: str
) -> None:
    """
    Without ``X-API-Key`` a route answers 401 ``Not authenticated``; with a
    wrong key 401; another key's session 403; a malformed id 400; an unknown
    id 404. Each body is FastAPI's ``{"detail": str}``.
    """
    sid = await create(http)
    url = server.url + path.format(sid=sid)
    kwargs: dict[str, Any] = {"json": DENY_ALL} if method == "POST" else {}
    async with httpx.AsyncClient(timeout=5) as anon:
        missing = await anon.request(method, url, **kwargs)
        wrong = await anon.request(
            method, url, headers={"X-API-Key": "instavm_sk_nope"}, **kwargs
        )
        other = await anon.request(
            method, url, headers={"X-API-Key": OTHER_KEY}, **kwargs
        )
    bad = await http.request(method, path.format(sid="not-a-uuid"), **kwargs)
    unknown = await http.request(method, path.format(sid=uuid.uuid4()), **kwargs)

    assert (401, "Not authenticated") == (missing.status_code, missing.json()["detail"])
    assert (401, "Invalid API key or session expired") == (
        wrong.status_code,
        wrong.json()["detail"],
    )
    assert [403, 400, 404] == [r.status_code for r in (other, bad, unknown)]
    for response in (missing, wrong, other, bad, unknown):
        check("HTTPError", response.json())


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/upload", {"remote_path": "x", "recursive": "false"}),
        ("/download", {"filename": "x"}),
    ],
)
async def test_file_routes_check_the_key_and_the_owner(
    http: httpx.AsyncClient, server: ASGIServer, path: str, fields: dict[str, str]
) -> None:
    """
    ``/upload`` and ``/download`` take the session id in the form: 401
    without or with a wrong key, 403 for another key's session, 400 for a
    malformed id, 404 for an unknown one.
    """
    sid = await create(http)
    files = {"file": ("x", b"1")} if path == "/upload" else None

    async def send(key: str | None, session_id: str) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            return await client.post(
                path,
                headers=headers,
                data={**fields, "session_id": session_id},
                files=files,
            )

    answers = [
        await send(None, sid),
        await send("instavm_sk_nope", sid),
        await send(OTHER_KEY, sid),
        await send(KEY, "not-a-uuid"),
        await send(KEY, str(uuid.uuid4())),
    ]

    assert [401, 401, 403, 400, 404] == [r.status_code for r in answers]
    assert "Not authenticated" == answers[0].json()["detail"]


async def test_upload_takes_the_api_key_in_the_form_too(
    server: ASGIServer, http: httpx.AsyncClient
) -> None:
    """
    The upload form documents an ``api_key`` field: without the header it
    authenticates the upload; a wrong one is 401.
    """
    sid = await create(http)
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as anon:
        ok = await anon.post(
            "/upload",
            data={"remote_path": "k.txt", "session_id": sid, "api_key": KEY},
            files={"file": ("k.txt", b"key in form")},
        )
        wrong = await anon.post(
            "/upload",
            data={"remote_path": "k.txt", "session_id": sid, "api_key": "bad"},
            files={"file": ("k.txt", b"x")},
        )

    assert 200 == ok.status_code
    assert 401 == wrong.status_code
    assert b"key in form" == content(await download(http, sid, "k.txt"))


# -- session record and usage -------------------------------------------------


async def test_session_info_is_the_record_without_env_values(
    http: httpx.AsyncClient,
) -> None:
    """
    ``GET /v1/sessions/session/{id}`` answers the record with its
    ``session_id``; ``env`` values (possibly secrets) are never in it.
    """
    sid = await create(
        http, vcpu_count=4, metadata={"team": "a"}, env={"TOKEN": "s3cr3t-value"}
    )

    response = await http.get(f"/v1/sessions/session/{sid}")

    assert 200 == response.status_code
    body = response.json()
    assert (sid, 4, {"team": "a"}, "active") == (
        body["session_id"],
        body["vcpu_count"],
        body["metadata"],
        body["status"],
    )
    assert "s3cr3t-value" not in response.text


async def test_usage_counts_executions_and_vm_time(
    http: httpx.AsyncClient, emulator: SandboxEmulator, clock: ManualClock
) -> None:
    """
    Usage counts the executions that ran (sync and async) and the seconds of
    VM time read from the clock, across a VM replacement; a lazy session
    with no execution has used nothing.
    """
    sid = await create(http, vm_lifetime_seconds=60)
    before = (await http.get(f"/v1/sessions/usage/{sid}")).json()

    await bash(http, sid, "echo one")
    await clock.advance(20)
    await http.post("/execute_async", json={"command": "print(2)", "session_id": sid})
    await clock.advance(50)  # the first VM dies at 60 s
    await bash(http, sid, "echo three")  # a new VM
    await clock.advance(5)
    after = (await http.get(f"/v1/sessions/usage/{sid}")).json()

    assert (0, 0.0, 0) == (
        before["executions"],
        before["vm_seconds"],
        before["vms_spawned"],
    )
    assert (3, 2, 65.0) == (
        after["executions"],
        after["vms_spawned"],
        after["vm_seconds"],
    )
    assert 3 * 0.01 == pytest.approx(after["execution_time"])


# -- app URL ------------------------------------------------------------------


async def test_app_url_follows_the_documented_shape_and_the_vm(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """
    Before any VM there is no URL (404); then the answer is an
    ``AppURLResponse`` for the port (default 80) with the VM's id and the
    seconds left; once the VM died its status is ``killed``.
    """
    sid = await create(http, vm_lifetime_seconds=30)
    lazy = await http.get(f"/v1/sessions/app-url/{sid}", params={"port": 3000})
    await bash(http, sid, "echo up")
    await clock.advance(10)
    default = await http.get(f"/v1/sessions/app-url/{sid}")
    chosen = await http.get(f"/v1/sessions/app-url/{sid}", params={"port": 3000})
    vm_id = (await http.get(f"/v1/sessions/status/{sid}")).json()["vm_id"]
    await clock.advance(25)
    dead = await http.get(f"/v1/sessions/app-url/{sid}", params={"port": 3000})

    assert (404, "No VM assigned to this session") == (
        lazy.status_code,
        lazy.json()["detail"],
    )
    for response in (default, chosen, dead):
        assert 200 == response.status_code
        check("AppURLResponse", response.json())
    body = chosen.json()
    assert (80, 3000) == (default.json()["port"], body["port"])
    assert (vm_id, sid, "active", 20) == (
        body["vm_id"],
        body["session_id"],
        body["status"],
        body["expires_in_seconds"],
    )
    assert body["url"].endswith(f"/v1/app/{sid}/3000/")
    assert f"https://{vm_id}-3000.sandbox.instavm.io/" == body["direct_url"]
    assert ("killed", 0) == (dead.json()["status"], dead.json()["expires_in_seconds"])


@pytest.mark.parametrize(
    ("port", "kind"),
    [("0", "greater_than_equal"), ("65536", "less_than_equal"), ("web", "int_parsing")],
)
async def test_app_url_port_out_of_range_is_a_422(
    http: httpx.AsyncClient, port: str, kind: str
) -> None:
    """
    ``port`` is 1..65535: others are refused with FastAPI's 422 list.
    """
    sid = await create(http)
    await bash(http, sid, "echo up")

    response = await http.get(f"/v1/sessions/app-url/{sid}", params={"port": port})

    assert 422 == response.status_code
    check("HTTPValidationError", response.json())
    [error] = response.json()["detail"]
    assert (kind, ["query", "port"], port) == (
        error["type"],
        error["loc"],
        error["input"],
    )


# -- upload and download ------------------------------------------------------


async def test_a_file_round_trips_byte_for_byte_inside_the_vm(
    http: httpx.AsyncClient,
) -> None:
    """
    Binary content (boundary-like bytes included) uploaded to a relative path
    lands under ``/app``; code in the VM reads it; a file the code writes
    downloads; an upload overwrites.
    """
    sid = await create(http)
    data = os.urandom(4096) + b"\r\n--boundary\r\n\x00"

    first = await upload(http, sid, "data/blob.bin", data)
    by_code = await bash(http, sid, "echo made by code > /app/out.txt\ncat notes.txt")
    await upload(http, sid, "/app/notes.txt", b"v1\n")
    await upload(http, sid, "/app/notes.txt", b"v2\n")
    read = await bash(http, sid, "cat notes.txt")

    assert 200 == first.status_code
    assert data == content(await download(http, sid, "/app/data/blob.bin"))
    assert data == content(await download(http, sid, "data/../data/blob.bin"))
    assert b"made by code\n" == content(await download(http, sid, "out.txt"))
    assert "No such file" in by_code["stdout"]
    assert "v2\n" == read["stdout"]


async def test_files_are_scoped_to_the_session_and_die_with_the_vm(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    Another session of the same key does not see the file; after the VM is
    replaced (state lost) the file is gone; a lazy session has no files.
    """
    sid, other = await create(http), await create(http)
    await upload(http, sid, "mine.txt", b"mine")

    elsewhere = await download(http, other, "mine.txt")
    emulator.replace_vm(sid)
    after_replace = await download(http, sid, "mine.txt")

    assert [404, 404] == [elsewhere.status_code, after_replace.status_code]
    assert "File not found" == after_replace.json()["detail"]


async def test_an_upload_spawns_the_lazy_vm(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    An upload needs the VM: into a lazy session it spawns one (and starts
    its lifetime), as a first execution would.
    """
    sid = await create(http)

    await upload(http, sid, "a.txt", b"a")

    assert emulator.session(sid)["vm_id"] is not None
    assert 1 == emulator.session(sid)["vms_spawned"]


async def test_file_routes_validate_their_forms(http: httpx.AsyncClient) -> None:
    """
    Missing form fields are FastAPI 422s naming each; a ``recursive`` that is
    not a boolean is a 422; ``recursive=true`` is not emulated (501); a
    killed session refuses an upload.
    """
    sid = await create(http)
    no_file = await http.post("/upload", data={"session_id": sid})
    not_bool = await http.post(
        "/upload",
        data={"remote_path": "a", "session_id": sid, "recursive": "perhaps"},
        files={"file": ("a", b"a")},
    )
    recursive = await upload(http, sid, "dir", b"x", recursive="true")
    no_name = await http.post("/download", data={"session_id": sid})
    await bash(http, sid, "echo up")
    await http.post("/kill", json={"session_id": sid})
    killed = await upload(http, sid, "a.txt", b"a")

    for response in (no_file, not_bool, no_name):
        assert 422 == response.status_code
        check("HTTPValidationError", response.json())
    assert [["body", "file"], ["body", "remote_path"]] == [
        e["loc"] for e in no_file.json()["detail"]
    ]
    assert "bool_parsing" == not_bool.json()["detail"][0]["type"]
    assert [["body", "filename"]] == [e["loc"] for e in no_name.json()["detail"]]
    assert 501 == recursive.status_code
    assert (404, "Session not found or terminated") == (
        killed.status_code,
        killed.json()["detail"],
    )


# -- egress -------------------------------------------------------------------


async def test_egress_is_deny_by_default_and_a_set_replaces_it(
    http: httpx.AsyncClient, emulator: SandboxEmulator
) -> None:
    """
    A new session's policy allows nothing; a set stores the policy and
    echoes it; a second set replaces it whole (omitted fields go back to
    deny); the policy belongs to the session, so it survives a VM replacement.
    """
    sid = await create(http)
    initial = (await http.get(f"/v1/egress/session/{sid}")).json()
    wide = {
        "allow_package_managers": True,
        "allow_http": False,
        "allow_https": True,
        "allowed_domains": ["api.openai.com", "huggingface.co"],
        "allowed_cidrs": ["10.0.0.0/8"],
    }
    echoed = (await http.post(f"/v1/egress/session/{sid}", json=wide)).json()
    stored = (await http.get(f"/v1/egress/session/{sid}")).json()
    narrowed = (
        await http.post(f"/v1/egress/session/{sid}", json={"allow_https": True})
    ).json()
    emulator.spawn_vm(sid)
    emulator.replace_vm(sid)
    kept = (await http.get(f"/v1/egress/session/{sid}")).json()

    assert DENY_ALL == initial
    assert wide == echoed == stored
    assert {**DENY_ALL, "allow_https": True} == narrowed == kept
    for body in (initial, echoed, narrowed):
        check("EgressPolicy", body)


async def test_egress_set_validates_like_fastapi(http: httpx.AsyncClient) -> None:
    """
    Wrong types are a 422 list naming each field (and list index); a body
    that is not JSON is a 422 ``json_invalid``; a killed session refuses a
    set but still shows its policy.
    """
    sid = await create(http)
    bad = await http.post(
        f"/v1/egress/session/{sid}",
        json={"allow_http": "sometimes", "allowed_domains": ["ok.com", 7]},
    )
    not_list = await http.post(
        f"/v1/egress/session/{sid}", json={"allowed_cidrs": "10.0.0.0/8"}
    )
    not_json = await http.post(
        f"/v1/egress/session/{sid}",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    await bash(http, sid, "echo up")
    await http.post("/kill", json={"session_id": sid})
    killed = await http.post(f"/v1/egress/session/{sid}", json=DENY_ALL)
    read = await http.get(f"/v1/egress/session/{sid}")

    for response in (bad, not_list, not_json):
        assert 422 == response.status_code
        check("HTTPValidationError", response.json())
    assert [
        ("bool_parsing", ["body", "allow_http"]),
        ("string_type", ["body", "allowed_domains", 1]),
    ] == [(e["type"], e["loc"]) for e in bad.json()["detail"]]
    assert "list_type" == not_list.json()["detail"][0]["type"]
    assert "json_invalid" == not_json.json()["detail"][0]["type"]
    assert (404, 200) == (killed.status_code, read.status_code)
