"""
Turning what the Morpheus gateway says into tether's errors.

The gateway speaks several envelopes, and hides many failures:

* ``{"detail": "..."}`` from FastAPI ``HTTPException``;
* ``{"detail": [{"type", "loc", "msg", "input"}]}`` on 422 (pydantic);
* ``{"error": {"message", "type", ...}}`` from the global handler, chat errors,
  ``approve`` (with HTTP 200!) and in-band SSE errors (with HTTP 200 too);
* 500 ``{"detail": "Unexpected error: 400: ..."}``: an ``HTTPException`` that the
  session routes caught and re-wrapped; the original status is inside the text.

:func:`classify` reads them all and picks the most specific tether error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import httpx

from tether import redact_text
from tether.abc import parse_retry_after
from tether.exceptions import (
    AuthError,
    ConflictError,
    PermanentProviderError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
)


# The session routes re-wrap HTTPExceptions, e.g. the detail
# Unexpected error: 400: No private key found and no fallback key configured
_REWRAPPED: Final = re.compile(
    r"^(?P<prefix>Unexpected error|Error closing session|Error handling session)"
    r":\s*(?P<status>[1-5]\d\d):\s*(?P<detail>.*)$",
    re.DOTALL,
)
# "HTTP 500: {\"error\":\"session expired\"}" inside proxy-router errors.
_PROXY_STATUS: Final = re.compile(r"HTTP (?P<status>[1-5]\d\d)")

_AUTH_DETAILS: Final = (
    "api key missing",
    "invalid api key",
    "api key not found",
    "api key not associated",
    "not authenticated",
    "could not validate credentials",
    "incorrect email or password",
    "invalid refresh token",
    "inactive user",
)
_SESSION_GONE: Final = (
    ("session expired", "session_expired"),
    ("session not found", "session_not_found"),
    ("no active session found", "session_not_found"),
    ("no session id provided", "session_not_found"),
)
_UNAVAILABLE: Final = (
    "no provider accepting session",
    "failed to connect to provider",
    "provider closed connection",
    "read timed out",
    "failed to create new session",
    "session created but not valid",
    "could not fetch cognito jwks",
)


def _text(body: Any) -> tuple[str | None, str | None, int | None]:
    """
    The message, error type and inner status in a gateway body, if any.
    """
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            status = error.get("status")
            return (
                str(error.get("message") or ""),
                None if error.get("type") is None else str(error.get("type")),
                status if isinstance(status, int) else None,
            )
        if isinstance(error, str):
            return error, None, None
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail, None, None
        if isinstance(detail, list):
            msgs = []
            for item in detail:
                if isinstance(item, Mapping):
                    loc = ".".join(str(p) for p in item.get("loc") or ())
                    msgs.append(
                        f"{loc}: {item.get('msg')}" if loc else str(item.get("msg"))
                    )
            return "; ".join(msgs) or "validation error", "validation_error", None
        message = body.get("message")
        if isinstance(message, str):
            return message, None, None
    if isinstance(body, str) and body:
        return body, None, None
    return None, None, None


def classify(
    status: int,
    body: Any,
    *,
    provider: str,
    operation: str,
    session_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """
    The tether error for one failed gateway answer.

    Args:
        status: The HTTP status (for in-band errors, the status they carry, or 200).
        body: The parsed JSON body (or text).
        provider: The provider name, for the error.
        operation: What was attempted.
        session_id: The session concerned.
        headers: Response headers (for ``Retry-After``).
    """
    message, etype, inner_status = _text(body)
    original = status
    if inner_status is not None:
        status = inner_status
    # Un-wrap "Unexpected error: 400: ..." to the status the handler meant.
    if message:
        match = _REWRAPPED.match(message)
        if match:
            status = int(match.group("status"))
            message = f"{match.group('prefix')}: {match.group('detail')}"
    lowered = (message or "").lower()
    if status >= 500 and message:  # noqa: PLR2004
        # Proxy-router errors name their own status: "HTTP 400: {...}".
        proxy = _PROXY_STATUS.search(message)
        if proxy:
            status = int(proxy.group("status"))
    text = redact_text(message or f"{provider} answered {original} to {operation}")
    kwargs: dict[str, Any] = {
        "provider": provider,
        "operation": operation,
        "session_id": session_id,
        "status_code": original,
        "body": body,
        "code": etype,
    }
    for needle, code in _SESSION_GONE:
        if needle in lowered:
            kwargs["code"] = code
            return RemoteNotFoundError(text, **kwargs)
    if status == 429:  # noqa: PLR2004
        retry_after = parse_retry_after((headers or {}).get("retry-after"))
        return RateLimitedError(text, retry_after=retry_after, **kwargs)
    if status in (404, 410):
        return RemoteNotFoundError(text, **kwargs)
    if any(needle in lowered for needle in _UNAVAILABLE):
        return ProviderUnavailableError(text, **kwargs)
    if status in (401, 403) or (
        status in (400, 500) and any(needle in lowered for needle in _AUTH_DETAILS)
    ):
        if "automation is disabled" in lowered:
            kwargs["code"] = "automation_disabled"
            return PermanentProviderError(text, **kwargs)
        return AuthError(text, **kwargs)
    if etype == "PrivateKeyNotFound" or "no private key found" in lowered:
        kwargs["code"] = etype or "private_key_not_found"
        return PermanentProviderError(text, **kwargs)
    if status == 402:  # noqa: PLR2004
        return PermanentProviderError(text, **kwargs)
    if status == 409:  # noqa: PLR2004
        return ConflictError(text, **kwargs)
    if status in (400, 422):
        return RequestRejectedError(text, **kwargs)
    if status >= 500 or status in (408, 425):  # noqa: PLR2004
        return ProviderUnavailableError(text, **kwargs)
    return PermanentProviderError(text, **kwargs)


def from_response(
    response: httpx.Response,
    *,
    provider: str,
    operation: str,
    session_id: str | None = None,
) -> ProviderError:
    """
    The tether error for an HTTP error response.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    return classify(
        response.status_code,
        body,
        provider=provider,
        operation=operation,
        session_id=session_id,
        headers=response.headers,
    )
