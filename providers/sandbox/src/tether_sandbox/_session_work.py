"""
The sandbox provider's session operations beyond code execution: the session
record, usage, an app URL for a port, files in and out of the VM, and the
session's egress policy.

:class:`SessionWork` is a base of :class:`~tether_sandbox.SandboxProvider`;
its methods are the provider's.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import posixpath
from collections.abc import Mapping
from typing import Any, Final

from tether.abc import Provider
from tether.exceptions import InvalidParameterError, ProviderUnavailableError
from tether_sandbox import _params
from tether_sandbox._compat import Session
from tether_sandbox._config import SandboxConfig
from tether_sandbox._session_values import (
    AppURL,
    EgressPolicy,
    SessionInfo,
    SessionUsage,
)


__all__ = ["SessionWork"]

MIN_PORT: Final = 1
MAX_PORT: Final = 65_535
DEFAULT_PORT: Final = 80
_EGRESS_FLAGS: Final = ("allow_package_managers", "allow_http", "allow_https")
_EGRESS_LISTS: Final = ("allowed_domains", "allowed_cidrs")


def _invalid(
    field: str, value: object, allowed: str, why: str
) -> InvalidParameterError:
    return InvalidParameterError(
        f"sandbox: {field} {why}; allowed: {allowed}",
        field=field,
        value=value,
        allowed=allowed,
        provider=_params.PROVIDER,
    )


def _check_path(field: str, path: object) -> str:
    allowed = "a file path in the VM (relative paths are under /app)"
    if not isinstance(path, str) or not path.strip():
        raise _invalid(field, path, allowed, "must be a non-empty string")
    if "\x00" in path or not path.isprintable():
        raise _invalid(field, path, allowed, "contains control characters")
    if path.endswith("/") or posixpath.basename(posixpath.normpath(path)) in (
        "",
        ".",
        "..",
    ):
        raise _invalid(field, path, allowed, "names a directory, not a file")
    return path


def _check_data(data: object) -> bytes:
    if isinstance(data, str) or not isinstance(data, bytes | bytearray | memoryview):
        raise _invalid(
            "data",
            type(data).__name__,
            "bytes (encode text first)",
            f"must be bytes, not {type(data).__name__}",
        )
    return bytes(data)


def _check_domain(domain: object) -> str:
    allowed = "domain names such as 'api.openai.com'"
    if (
        not isinstance(domain, str)
        or not domain
        or any(ch.isspace() or ch in "/:@" for ch in domain)
        or not domain.isprintable()
    ):
        raise _invalid("allowed_domains", domain, allowed, "holds a bad domain")
    return domain


def _check_cidr(cidr: object) -> str:
    allowed = "address ranges such as '10.0.0.0/8'"
    if not isinstance(cidr, str):
        raise _invalid("allowed_cidrs", cidr, allowed, "holds a non-string")
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise _invalid("allowed_cidrs", cidr, allowed, "holds a bad range") from None
    return cidr


def _check_policy(policy: object) -> dict[str, Any]:
    if not isinstance(policy, EgressPolicy):
        raise _invalid(
            "policy",
            type(policy).__name__,
            "an EgressPolicy",
            f"must be an EgressPolicy, not {type(policy).__name__}",
        )
    body: dict[str, Any] = {}
    for name in _EGRESS_FLAGS:
        value = getattr(policy, name)
        if not isinstance(value, bool):
            raise _invalid(name, value, "True or False", "must be a bool")
        body[name] = value
    body["allowed_domains"] = [_check_domain(d) for d in policy.allowed_domains]
    body["allowed_cidrs"] = [_check_cidr(c) for c in policy.allowed_cidrs]
    return body


def _policy(body: Mapping[str, Any]) -> EgressPolicy:
    def strings(name: str) -> tuple[str, ...]:
        value = body.get(name)
        if not isinstance(value, list):
            return ()
        return tuple(v for v in value if isinstance(v, str))

    return EgressPolicy(
        **{name: body.get(name) is True for name in _EGRESS_FLAGS},
        allowed_domains=strings("allowed_domains"),
        allowed_cidrs=strings("allowed_cidrs"),
    )


class SessionWork(Provider[SandboxConfig]):
    """
    Session operations of :class:`~tether_sandbox.SandboxProvider` (see there).
    """

    def _remote(self, session: Session) -> str:
        if session.remote_id is None:
            msg = f"session {session.id} has no sandbox session id yet"
            raise InvalidParameterError(
                msg, field="session", value=session.id, provider=self.name
            )
        return session.remote_id

    def _object(
        self, answer: Any, *, operation: str, session_id: str
    ) -> Mapping[str, Any]:
        if not isinstance(answer, Mapping):
            msg = f"sandbox answered {operation} with something other than an object"
            raise ProviderUnavailableError(
                msg,
                provider=self.name,
                operation=operation,
                session_id=session_id,
                body=answer,
            )
        return answer

    async def _get(
        self, url: str, *, operation: str, session_id: str, **kwargs: Any
    ) -> Mapping[str, Any]:
        response = await self.request(
            "GET", url, operation=operation, session_id=session_id, **kwargs
        )
        answer = self.json(response, operation=operation)
        return self._object(answer, operation=operation, session_id=session_id)

    async def session_info(self, session: Session) -> SessionInfo:
        """
        The service's record of the session (``GET /v1/sessions/session/{id}``).

        Works on an ended session too: the service keeps the record.
        """
        remote_id = self._remote(session)
        body = await self._get(
            f"/v1/sessions/session/{remote_id}",
            operation="session_info",
            session_id=remote_id,
        )
        return SessionInfo(
            session_id=str(body.get("session_id") or remote_id), raw=body
        )

    async def usage(self, session: Session) -> SessionUsage:
        """
        What the session used (``GET /v1/sessions/usage/{id}``), as the service
        reports it (its fields are undocumented: see :class:`SessionUsage`).

        Works on an ended session too.
        """
        remote_id = self._remote(session)
        body = await self._get(
            f"/v1/sessions/usage/{remote_id}", operation="usage", session_id=remote_id
        )
        return SessionUsage(session_id=remote_id, raw=body)

    async def app_url(self, session: Session, port: int = DEFAULT_PORT) -> AppURL:
        """
        A public URL for *port* inside the VM (``GET /v1/sessions/app-url/{id}``).

        The URL lives as long as the VM that serves it (:attr:`AppURL.vm_id`).
        A session whose VM was never spawned has none yet: the service answers
        404 (:class:`~tether.exceptions.RemoteNotFoundError`).

        Args:
            session: A live sandbox session.
            port: The port a service listens on inside the VM, 1..65535.

        Raises:
            SessionEndedError: The session is closed, expired or lost.
            InvalidParameterError: A bad port; nothing was sent.
        """
        session.ensure_usable()
        remote_id = self._remote(session)
        number = _params.check_whole("port", port, MIN_PORT, MAX_PORT)
        body = await self._get(
            f"/v1/sessions/app-url/{remote_id}",
            operation="app_url",
            session_id=remote_id,
            params={"port": number},
        )
        try:
            expires = body.get("expires_in_seconds")
            return AppURL(
                url=str(body["url"]),
                direct_url=str(body["direct_url"]),
                vm_ip=str(body["vm_ip"]),
                port=int(body["port"]),
                vm_id=str(body["vm_id"]),
                session_id=str(body["session_id"]),
                status=str(body["status"]),
                expires_in_seconds=None if expires is None else int(expires),
                raw=body,
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = "sandbox answered app_url without the fields of AppURLResponse"
            raise ProviderUnavailableError(
                msg,
                provider=self.name,
                operation="app_url",
                session_id=remote_id,
                body=body,
            ) from exc

    async def upload(self, session: Session, path: str, data: bytes) -> None:
        """
        Write *data* to the file *path* in the VM (``POST /upload``, multipart).

        An existing file is overwritten, so repeating an upload is harmless.
        Relative paths are under ``/app``. Like an execution, an upload into a
        session without a live VM spawns one (and starts its lifetime); files
        die with their VM.

        Raises:
            SessionEndedError: The session is closed, expired or lost.
            InvalidParameterError: A bad path, or *data* that is not bytes;
                nothing was sent.
        """
        session.ensure_usable()
        remote_id = self._remote(session)
        remote_path = _check_path("path", path)
        content = _check_data(data)
        name = posixpath.basename(posixpath.normpath(remote_path))
        await self.request(
            "POST",
            "/upload",
            operation="upload",
            session_id=remote_id,
            data={
                "remote_path": remote_path,
                "session_id": remote_id,
                "recursive": "false",
            },
            files={"file": (name, content, "application/octet-stream")},
        )

    async def download(self, session: Session, path: str) -> bytes:
        """
        The content of the file *path* in the VM (``POST /download``).

        Relative paths are under ``/app``. A file that does not exist (or whose
        VM is gone) is a :class:`~tether.exceptions.RemoteNotFoundError`.

        Raises:
            SessionEndedError: The session is closed, expired or lost.
            InvalidParameterError: A bad path; nothing was sent.
        """
        session.ensure_usable()
        remote_id = self._remote(session)
        remote_path = _check_path("path", path)
        response = await self.request(
            "POST",
            "/download",
            operation="download",
            session_id=remote_id,
            data={"filename": remote_path, "session_id": remote_id},
        )
        if "json" not in response.headers.get("content-type", ""):
            # Some of InstaVM's clients read the file as the raw body.
            return response.content
        answer = self._object(
            self.json(response, operation="download"),
            operation="download",
            session_id=remote_id,
        )
        encoded = answer.get("content")
        try:
            if not isinstance(encoded, str):
                raise TypeError(encoded)
            return base64.b64decode(encoded, validate=True)
        except (TypeError, binascii.Error) as exc:
            msg = "sandbox answered download without base64 `content`"
            raise ProviderUnavailableError(
                msg,
                provider=self.name,
                operation="download",
                session_id=remote_id,
            ) from exc

    async def egress(self, session: Session) -> EgressPolicy:
        """
        The session's egress policy (``GET /v1/egress/session/{id}``).
        """
        remote_id = self._remote(session)
        body = await self._get(
            f"/v1/egress/session/{remote_id}", operation="egress", session_id=remote_id
        )
        return _policy(body)

    async def set_egress(self, session: Session, policy: EgressPolicy) -> EgressPolicy:
        """
        Replace the session's egress policy (``POST /v1/egress/session/{id}``)
        and return it as the service now has it.

        Every field is sent, so setting the same policy twice is harmless. It
        applies to the session's VMs, including one spawned later.

        Raises:
            SessionEndedError: The session is closed, expired or lost.
            InvalidParameterError: A bad domain or address range; nothing was sent.
        """
        session.ensure_usable()
        remote_id = self._remote(session)
        body = _check_policy(policy)
        response = await self.request(
            "POST",
            f"/v1/egress/session/{remote_id}",
            operation="set_egress",
            session_id=remote_id,
            json=body,
        )
        answer = self._object(
            self.json(response, operation="set_egress"),
            operation="set_egress",
            session_id=remote_id,
        )
        if not any(name in answer for name in (*_EGRESS_FLAGS, *_EGRESS_LISTS)):
            # The answer's shape is undocumented; without the policy in it,
            # what was sent is what the service accepted.
            return policy
        return _policy(answer)
