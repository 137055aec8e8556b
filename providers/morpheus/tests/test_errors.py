"""
The gateway's error envelopes, including the shapes the emulator does not
produce on its own, map onto the most specific tether error.
"""

from __future__ import annotations

import pytest

from tether.exceptions import (
    AuthError,
    ConflictError,
    PermanentProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RemoteNotFoundError,
    RequestRejectedError,
)
from tether_morpheus._errors import classify


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        # get_api_key_model on the session routes: an unknown prefix is a 400.
        (400, {"detail": "API key not found"}, AuthError, None),
        (401, {"detail": "Invalid API key"}, AuthError, None),
        (401, {"detail": "Could not validate credentials"}, AuthError, None),
        (
            503,
            {"detail": "Could not fetch Cognito JWKS"},
            ProviderUnavailableError,
            None,
        ),
        # HTTPExceptions re-wrapped as 500 by the session routes.
        (
            500,
            {
                "detail": "Unexpected error: 400: No private key found and no fallback key configured"
            },
            PermanentProviderError,
            "private_key_not_found",
        ),
        (
            500,
            {"detail": "Unexpected error: 500: Failed to create new session"},
            ProviderUnavailableError,
            None,
        ),
        (
            500,
            {
                "detail": "Unexpected error: 500: Session created but not valid in proxy router"
            },
            ProviderUnavailableError,
            None,
        ),
        (
            500,
            {
                "detail": "Unexpected error: 500: Missing required environment variables: CHAIN_ID"
            },
            ProviderUnavailableError,
            None,
        ),
        (500, {"detail": "Unexpected error: 409: conflict"}, ConflictError, None),
        (
            500,
            {"detail": "Error closing session: 500: Failed to close session"},
            ProviderUnavailableError,
            None,
        ),
        (
            400,
            {"detail": "Invalid blockchain ID format: llama"},
            RequestRejectedError,
            None,
        ),
        # Proxy errors name their own status inside the text.
        (
            500,
            {
                "detail": 'Error from proxy router: Failed to create session: HTTP 500: {"error":"no provider accepting session: []"}'
            },
            ProviderUnavailableError,
            None,
        ),
        # Chat: the node's session errors (non-stream and in-band SSE).
        (
            500,
            {
                "error": {
                    "message": 'HTTP 500: {"error":"session expired"}',
                    "type": "server_error",
                }
            },
            RemoteNotFoundError,
            "session_expired",
        ),
        (
            200,
            {
                "error": {
                    "message": 'HTTP 500: {"error":"session not found"}',
                    "type": "server_error",
                    "status": 500,
                }
            },
            RemoteNotFoundError,
            "session_not_found",
        ),
        (
            400,
            {
                "detail": "No session ID provided in request and no active session found for API key"
            },
            RemoteNotFoundError,
            "session_not_found",
        ),
        (
            500,
            {"detail": "Error handling session: 500: boom"},
            ProviderUnavailableError,
            None,
        ),
        (
            500,
            {
                "error": {
                    "message": "Error in API gateway: boom",
                    "type": "gateway_error",
                    "session_id": "0x1",
                }
            },
            ProviderUnavailableError,
            "gateway_error",
        ),
        (
            403,
            {
                "detail": "Session automation is disabled. Please enable it in your Account settings to use Chat."
            },
            PermanentProviderError,
            "automation_disabled",
        ),
        # Today's gateway's shapes.
        (
            402,
            {
                "error": {
                    "message": "Insufficient balance",
                    "type": "insufficient_balance",
                }
            },
            PermanentProviderError,
            "insufficient_balance",
        ),
        (
            429,
            {
                "error": {
                    "message": "Rate limit exceeded",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
            RateLimitedError,
            "requests",
        ),
        (
            502,
            {
                "error": {
                    "message": "upstream failed",
                    "type": "proxy_error",
                    "status": 502,
                }
            },
            ProviderUnavailableError,
            "proxy_error",
        ),
        (
            400,
            {"error": {"message": "model x not found", "type": "model_not_found"}},
            RequestRejectedError,
            "model_not_found",
        ),
        # approve's HTTP-200 failure.
        (
            200,
            {"error": {"message": "No private key", "type": "PrivateKeyNotFound"}},
            PermanentProviderError,
            "PrivateKeyNotFound",
        ),
        # 422 with the pydantic list.
        (
            422,
            {
                "detail": [
                    {
                        "type": "missing",
                        "loc": ["query", "model_id"],
                        "msg": "Field required",
                        "input": None,
                    }
                ]
            },
            RequestRejectedError,
            "validation_error",
        ),
        (404, {"detail": "Not Found"}, RemoteNotFoundError, None),
        (500, "Internal Server Error", ProviderUnavailableError, None),
    ],
)
def test_classification(status, body, expected, code):
    """
    Each envelope becomes the expected error class and code, keeping the status.
    """
    error = classify(status, body, provider="morpheus", operation="op")

    assert type(error) is expected
    assert error.code == code
    assert error.status_code == status


def test_rewrapped_detail_is_unwrapped_in_the_message():
    """
    The message drops the re-wrapped status and keeps the original detail.
    """
    error = classify(
        500,
        {
            "detail": "Unexpected error: 400: No private key found and no fallback key configured"
        },
        provider="morpheus",
        operation="create",
    )

    assert str(error).startswith("Unexpected error: No private key found")


def test_retry_after_is_read():
    """
    A 429's ``Retry-After`` reaches RateLimitedError.retry_after.
    """
    error = classify(
        429,
        {"detail": "slow down"},
        provider="morpheus",
        operation="chat",
        headers={"retry-after": "7"},
    )

    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 7.0


def test_secrets_in_messages_are_masked():
    """
    A key echoed back in an error message never reaches the exception text.
    """
    key = "sk-AbC123." + "f" * 64

    error = classify(
        401, {"detail": f"Invalid API key {key}"}, provider="morpheus", operation="op"
    )

    assert key not in str(error)
    assert key not in repr(error.body)
